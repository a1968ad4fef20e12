"""change notifications, lineage, the load's change log and the warehouse's row definitions

Revision ID: 0011_freshness_pipeline
Revises: 0010_cube_stock_and_indexes
"""

from db.migrations.sqlfile import run_sql_file

revision = "0011_freshness_pipeline"
down_revision = "0010_cube_stock_and_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a NOTIFY trigger on seven app tables: taken up front, in the writers' order
    run_sql_file(
        "0011_freshness_pipeline.sql",
        locks=("app.customers", "app.products", "app.orders", "app.order_items",
               "app.returns", "app.feedback", "app.support_tickets"),
    )  # fmt: skip


def downgrade() -> None:
    raise NotImplementedError("cdms migrations are forward-only; restore a backup instead")
