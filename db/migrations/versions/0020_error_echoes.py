"""a refusal quotes at most 64 characters of a value; a refund's third decimal is told as such

Revision ID: 0020_error_echoes
Revises: 0019_text_limits
"""

from db.migrations.sqlfile import run_sql_file

revision = "0020_error_echoes"
down_revision = "0019_text_limits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0020_error_echoes.sql")  # functions only: no app table locked


def downgrade() -> None:
    raise NotImplementedError("cdms migrations are forward-only; restore a backup instead")
