"""deleting a customer revokes its API keys; emptying app.customers (a reseed) revokes
every customer key

Revision ID: 0034_customer_keys_revoked
Revises: 0033_feedback_edit_limit
"""

from db.migrations.sqlfile import run_sql_file

revision = "0034_customer_keys_revoked"
down_revision = "0033_feedback_edit_limit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # the function and its grants first, holding nothing; then CREATE TRIGGER on
    # app.customers (SHARE ROW EXCLUSIVE, catalogue only: no row is read or changed)
    run_sql_file(
        "0034_customer_keys_revoked.sql", locks=("app.customers",), mode="SHARE ROW EXCLUSIVE"
    )


def downgrade() -> None:
    # DROP TRIGGER takes ACCESS EXCLUSIVE
    run_sql_file(
        "0034_customer_keys_revoked_down.sql", locks=("app.customers",), mode="ACCESS EXCLUSIVE"
    )
