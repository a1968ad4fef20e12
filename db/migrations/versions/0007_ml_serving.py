"""feature tables for serving and the prediction log

Revision ID: 0007_ml_serving
Revises: 0006_security
"""

from db.migrations.sqlfile import run_sql_file

revision = "0007_ml_serving"
down_revision = "0006_security"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0007_ml_serving.sql")


def downgrade() -> None:
    raise NotImplementedError("cdms migrations are forward-only; restore a backup instead")
