"""daily stock snapshot fact, indexes on the facts' event times

Revision ID: 0010_cube_stock_and_indexes
Revises: 0009_request_safety
"""

from db.migrations.sqlfile import run_sql_file

revision = "0010_cube_stock_and_indexes"
down_revision = "0009_request_safety"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0010_cube_stock_and_indexes.sql")


def downgrade() -> None:
    raise NotImplementedError("cdms migrations are forward-only; restore a backup instead")
