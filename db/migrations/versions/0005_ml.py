"""model registry and prediction log

Revision ID: 0005_ml
Revises: 0004_dw
"""

from db.migrations.sqlfile import run_sql_file

revision = "0005_ml"
down_revision = "0004_dw"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0005_ml.sql")


def downgrade() -> None:
    raise NotImplementedError("cdms migrations are forward-only; restore a backup instead")
