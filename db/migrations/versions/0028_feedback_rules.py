"""feedback's rules: a named product is in the named order; for API principals a review
rates a product, one per customer and product; for customer keys a review needs a delivered
purchase, a complaint a product ordered, and at most 20 feedback a day

Revision ID: 0028_feedback_rules
Revises: 0027_customer_order_value_stored
"""

from db.migrations.sqlfile import run_sql_file

revision = "0028_feedback_rules"
down_revision = "0027_customer_order_value_stored"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # the function first, holding nothing; then CREATE TRIGGER on app.feedback (SHARE ROW
    # EXCLUSIVE, catalogue only: no row is read or changed)
    run_sql_file("0028_feedback_rules.sql", locks=("app.feedback",), mode="SHARE ROW EXCLUSIVE")


def downgrade() -> None:
    run_sql_file(
        "0028_feedback_rules_down.sql", locks=("app.feedback",), mode="SHARE ROW EXCLUSIVE"
    )
