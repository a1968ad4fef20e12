"""when the stored predictions are known complete (a restart need not count them)

Revision ID: 0013_ops_stored_state
Revises: 0012_insight_rfm
"""

from db.migrations.sqlfile import run_sql_file

revision = "0013_ops_stored_state"
down_revision = "0012_insight_rfm"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0013_ops_stored_state.sql")  # ml tables only: no app lock


def downgrade() -> None:
    raise NotImplementedError("cdms migrations are forward-only; restore a backup instead")
