"""an index per RFM score on dw.fact_customer_rfm: a run re-tiles the open month from the rows
at the tiles' edges instead of sorting every customer three times

Revision ID: 0022_rfm_score_indexes
Revises: 0021_guard_details
"""

from db.migrations.sqlfile import run_sql_file

revision = "0022_rfm_score_indexes"
down_revision = "0021_guard_details"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0022_rfm_score_indexes.sql")


def downgrade() -> None:
    raise NotImplementedError("cdms migrations are forward-only; restore a backup instead")
