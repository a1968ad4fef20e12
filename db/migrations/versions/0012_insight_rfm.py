"""the monthly RFM snapshot per customer (behavioural segments)

Revision ID: 0012_insight_rfm
Revises: 0011_freshness_pipeline
"""

from db.migrations.sqlfile import run_sql_file

revision = "0012_insight_rfm"
down_revision = "0011_freshness_pipeline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0012_insight_rfm.sql")


def downgrade() -> None:
    raise NotImplementedError("cdms migrations are forward-only; restore a backup instead")
