"""app.is_customer_actor(actor): is a recorded actor (an order's created_by, a ticket's
opened_by) a customer principal, its token or one of its API keys? The rules about what a
customer holds and writes (the hold's expiry, the 100 unpaid units, the daily caps) count
what the customer did, and nothing the shop did for it

Revision ID: 0029_customer_actor
Revises: 0028_feedback_rules
"""

from db.migrations.sqlfile import run_sql_file

revision = "0029_customer_actor"
down_revision = "0028_feedback_rules"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a function only: no table is locked or changed (a column on app.orders would change
    # the row type app.set_order_status returns under the running servers' prepared calls)
    run_sql_file("0029_customer_actor.sql")


def downgrade() -> None:
    run_sql_file("0029_customer_actor_down.sql")
