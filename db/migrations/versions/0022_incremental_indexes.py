"""indexes for a pipeline run under a steady write load: the RFM open month's tiles' edges
and the customers a day moved, the current customers' versions a run wrote

Revision ID: 0022_incremental_indexes
Revises: 0021_guard_details
"""

from db.migrations.sqlfile import run_sql_file

revision = "0022_incremental_indexes"
down_revision = "0021_guard_details"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # DROP INDEX on app.order_items: ACCESS EXCLUSIVE (the index builds: ~1.4 s at 1M
    # orders), taken up front in the writers' order, as every app table a file touches
    run_sql_file(
        "0022_incremental_indexes.sql",
        locks=("app.orders", "app.order_items"),
        mode="ACCESS EXCLUSIVE",
    )


def downgrade() -> None:
    raise NotImplementedError("cdms migrations are forward-only; restore a backup instead")
