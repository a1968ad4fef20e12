"""app.placed_by_customer(created_by): was an order placed by a customer principal (its
token or one of its API keys)? The rules about a customer's unpaid orders (the hold's
expiry, the 100 units) count those orders, and no others

Revision ID: 0029_placed_by_customer
Revises: 0028_feedback_rules
"""

from db.migrations.sqlfile import run_sql_file

revision = "0029_placed_by_customer"
down_revision = "0028_feedback_rules"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a function only: no table is locked or changed (a column on app.orders would change
    # the row type app.set_order_status returns under the running servers' prepared calls)
    run_sql_file("0029_placed_by_customer.sql")


def downgrade() -> None:
    run_sql_file("0029_placed_by_customer_down.sql")
