"""stored predictions of orders and tickets

Revision ID: 0008_stored_predictions
Revises: 0007_ml_serving
"""

from db.migrations.sqlfile import run_sql_file

revision = "0008_stored_predictions"
down_revision = "0007_ml_serving"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0008_stored_predictions.sql")


def downgrade() -> None:
    raise NotImplementedError("cdms migrations are forward-only; restore a backup instead")
