"""a line's refunds add up to at most what was paid for it; a customer asks for a return
within 30 days of delivery

Revision ID: 0031_return_window_refund_cap
Revises: 0030_customer_daily_limits
"""

from db.migrations.sqlfile import run_sql_file

revision = "0031_return_window_refund_cap"
down_revision = "0030_customer_daily_limits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0031_return_window_refund_cap.sql")  # functions only: no app table locked


def downgrade() -> None:
    run_sql_file("0031_return_window_refund_cap_down.sql")
