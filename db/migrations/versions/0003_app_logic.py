"""triggers, procedures and views of the operational model

Revision ID: 0003_app_logic
Revises: 0002_app_tables
"""

from db.migrations.sqlfile import run_sql_file

revision = "0003_app_logic"
down_revision = "0002_app_tables"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0003_app_logic.sql")


def downgrade() -> None:
    raise NotImplementedError("cdms migrations are forward-only; restore a backup instead")
