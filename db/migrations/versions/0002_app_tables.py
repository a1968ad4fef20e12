"""operational tables, constraints and indexes

Revision ID: 0002_app_tables
Revises: 0001_schemas
"""

from db.migrations.sqlfile import run_sql_file

revision = "0002_app_tables"
down_revision = "0001_schemas"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0002_app_tables.sql")


def downgrade() -> None:
    raise NotImplementedError("cdms migrations are forward-only; restore a backup instead")
