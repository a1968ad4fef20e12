"""what the continuous ETL needs to redo only what moved

Revision ID: 0016_fresh_incremental
Revises: 0015_fresh_rollup_deltas
"""

from db.migrations.sqlfile import run_sql_file

revision = "0016_fresh_incremental"
down_revision = "0015_fresh_rollup_deltas"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0016_fresh_incremental.sql")


def downgrade() -> None:
    raise NotImplementedError("cdms migrations are forward-only; restore a backup instead")
