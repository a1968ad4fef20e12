"""the write guard that keeps a customer to cancelling names the refused status in its detail

Revision ID: 0020_guard_details
Revises: 0019_text_limits
"""

from db.migrations.sqlfile import run_sql_file

revision = "0020_guard_details"
down_revision = "0019_text_limits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0020_guard_details.sql")


def downgrade() -> None:
    raise NotImplementedError("cdms migrations are forward-only; restore a backup instead")
