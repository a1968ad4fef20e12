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
    run_sql_file("0011_freshness_pipeline.sql")


def downgrade() -> None:
    raise NotImplementedError("cdms migrations are forward-only; restore a backup instead")
