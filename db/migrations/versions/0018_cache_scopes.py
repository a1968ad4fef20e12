"""dw.etl_version: what each warehouse version changed (the cube cache keeps what it did not)

Revision ID: 0018_cache_scopes
Revises: 0017_customer_return_lock
"""

from db.migrations.sqlfile import run_sql_file

revision = "0018_cache_scopes"
down_revision = "0017_customer_return_lock"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0018_cache_scopes.sql")


def downgrade() -> None:
    raise NotImplementedError("cdms migrations are forward-only; restore a backup instead")
