"""the shop's note on a return decision in app.returns.decision_comment (staff only); the
customer's comment never rewritten by the shop

Revision ID: 0037_return_decision_comment
Revises: 0036_returned_by_returns
"""

from db.migrations.sqlfile import run_sql_file

revision = "0037_return_decision_comment"
down_revision = "0036_returned_by_returns"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ALTER TABLE app.returns (ACCESS EXCLUSIVE, briefly: the new column's CHECK scans it),
    # then the grants and app.reject_return
    run_sql_file(
        "0037_return_decision_comment.sql", locks=("app.returns",), mode="ACCESS EXCLUSIVE"
    )


def downgrade() -> None:
    run_sql_file(
        "0037_return_decision_comment_down.sql", locks=("app.returns",), mode="ACCESS EXCLUSIVE"
    )
