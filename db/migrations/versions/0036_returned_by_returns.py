"""an order becomes RETURNED through its returns only

Revision ID: 0036_returned_by_returns
Revises: 0035_idempotency_per_customer
"""

from db.migrations.sqlfile import run_sql_file

revision = "0036_returned_by_returns"
down_revision = "0035_idempotency_per_customer"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0036_returned_by_returns.sql")  # a function only: no app table locked


def downgrade() -> None:
    run_sql_file("0036_returned_by_returns_down.sql")
