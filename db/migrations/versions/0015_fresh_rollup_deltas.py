"""fact deltas for the maintenance of rollups

Revision ID: 0015_fresh_rollup_deltas
Revises: 0014_insight_churn_stored
"""

from db.migrations.sqlfile import run_sql_file

revision = "0015_fresh_rollup_deltas"
down_revision = "0014_insight_churn_stored"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0015_fresh_rollup_deltas.sql")


def downgrade() -> None:
    raise NotImplementedError("cdms migrations are forward-only; restore a backup instead")
