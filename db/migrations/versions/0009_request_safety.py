"""order line price guard, idempotency keys, shared rate-limit buckets

Revision ID: 0009_request_safety
Revises: 0008_stored_predictions
"""

from db.migrations.sqlfile import run_sql_file

revision = "0009_request_safety"
down_revision = "0008_stored_predictions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a trigger on order_items, a foreign key to orders: both locked first, orders first
    run_sql_file("0009_request_safety.sql", locks=("app.order_items", "app.orders"))


def downgrade() -> None:
    raise NotImplementedError("cdms migrations are forward-only; restore a backup instead")
