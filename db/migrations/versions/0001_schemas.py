"""schemas app, dw, ml

Revision ID: 0001_schemas
Revises: None
"""

from db.migrations.sqlfile import run_sql_file

revision = "0001_schemas"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0001_schemas.sql")


def downgrade() -> None:
    raise NotImplementedError("cdms migrations are forward-only; restore a backup instead")
