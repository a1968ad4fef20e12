"""placeOrder's idempotency keys belong to the customer, whichever of its credentials
sends them

Revision ID: 0035_idempotency_per_customer
Revises: 0034_customer_keys_revoked
"""

from db.migrations.sqlfile import run_sql_file

revision = "0035_idempotency_per_customer"
down_revision = "0034_customer_keys_revoked"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # the policy is replaced and the held keys moved under one lock, so no placeOrder
    # finds neither policy (ACCESS EXCLUSIVE on a table of a day's keys: brief)
    run_sql_file(
        "0035_idempotency_per_customer.sql",
        locks=("app.idempotency_keys",),
        mode="ACCESS EXCLUSIVE",
    )


def downgrade() -> None:
    run_sql_file(
        "0035_idempotency_per_customer_down.sql",
        locks=("app.idempotency_keys",),
        mode="ACCESS EXCLUSIVE",
    )
