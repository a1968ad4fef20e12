"""API keys, persisted queries, the cdms_api role and row-level security

Revision ID: 0006_security
Revises: 0005_ml
"""

from db.migrations.sqlfile import run_sql_file

revision = "0006_security"
down_revision = "0005_ml"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # row-level security and policies on every app table (ACCESS EXCLUSIVE, briefly)
    run_sql_file(
        "0006_security.sql",
        locks=("app.customers", "app.products", "app.orders", "app.order_items",
               "app.order_status_history", "app.feedback", "app.returns",
               "app.support_tickets"),
        mode="ACCESS EXCLUSIVE",
    )  # fmt: skip


def downgrade() -> None:
    raise NotImplementedError("cdms migrations are forward-only; restore a backup instead")
