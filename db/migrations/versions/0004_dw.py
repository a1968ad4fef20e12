"""warehouse star schema and ETL bookkeeping

Revision ID: 0004_dw
Revises: 0003_app_logic
"""

from db.migrations.sqlfile import run_sql_file

revision = "0004_dw"
down_revision = "0003_app_logic"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # CREATE TRIGGER on seven app tables: taken up front, in the writers' order
    run_sql_file(
        "0004_dw.sql",
        locks=("app.orders", "app.order_items", "app.returns", "app.feedback",
               "app.support_tickets", "app.customers", "app.products"),
    )  # fmt: skip


def downgrade() -> None:
    raise NotImplementedError("cdms migrations are forward-only; restore a backup instead")
