"""a customer principal writes only the columns its mutations write, and moves stock only
inside app.place_order and app.set_order_status

Revision ID: 0032_customer_write_columns
Revises: 0031_return_window_refund_cap
"""

from db.migrations.sqlfile import run_sql_file

revision = "0032_customer_write_columns"
down_revision = "0031_return_window_refund_cap"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0032_customer_write_columns.sql")  # grants and functions: no app table locked


def downgrade() -> None:
    run_sql_file("0032_customer_write_columns_down.sql")
