"""the write guard that keeps a customer to cancelling names the refused status in its detail

Revision ID: 0021_guard_details
Revises: 0020_error_echoes
"""

from db.migrations.sqlfile import run_sql_file

revision = "0021_guard_details"
down_revision = "0020_error_echoes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0021_guard_details.sql")


def downgrade() -> None:
    raise NotImplementedError("cdms migrations are forward-only; restore a backup instead")
