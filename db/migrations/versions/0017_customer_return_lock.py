"""customers (their own) and the service role may lock, never change, order lines: returns work

Revision ID: 0017_customer_return_lock
Revises: 0016_fresh_incremental
"""

from db.migrations.sqlfile import run_sql_file

revision = "0017_customer_return_lock"
down_revision = "0016_fresh_incremental"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0017_customer_return_lock.sql")


def downgrade() -> None:
    raise NotImplementedError("cdms migrations are forward-only; restore a backup instead")
