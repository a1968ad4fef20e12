"""daily stock snapshot fact, indexes on the facts' event times

Revision ID: 0009_cube_stock_and_indexes
Revises: 0008_stored_predictions
"""

from db.migrations.sqlfile import run_sql_file

revision = "0009_cube_stock_and_indexes"
down_revision = "0008_stored_predictions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0009_cube_stock_and_indexes.sql")


def downgrade() -> None:
    raise NotImplementedError("cdms migrations are forward-only; restore a backup instead")
