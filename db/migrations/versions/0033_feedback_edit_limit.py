"""a customer principal edits its feedback at most 20 times in 24 hours (as it gives 20
since 0028), counted in app.feedback_edits

Revision ID: 0033_feedback_edit_limit
Revises: 0032_customer_write_columns
"""

from db.migrations.sqlfile import run_sql_file

revision = "0033_feedback_edit_limit"
down_revision = "0032_customer_write_columns"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # the log table and the function first, holding no app table; then CREATE TRIGGER on
    # app.feedback (SHARE ROW EXCLUSIVE, catalogue only: no row is read or changed)
    run_sql_file(
        "0033_feedback_edit_limit.sql", locks=("app.feedback",), mode="SHARE ROW EXCLUSIVE"
    )


def downgrade() -> None:
    # DROP TRIGGER and DROP TABLE take ACCESS EXCLUSIVE: the trigger's table, then its log
    run_sql_file(
        "0033_feedback_edit_limit_down.sql",
        locks=("app.feedback", "app.feedback_edits"),
        mode="ACCESS EXCLUSIVE",
    )
