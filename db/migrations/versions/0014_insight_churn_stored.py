"""stored churn_risk predictions per customer

Revision ID: 0014_insight_churn_stored
Revises: 0013_ops_stored_state
"""

from db.migrations.sqlfile import run_sql_file

revision = "0014_insight_churn_stored"
down_revision = "0013_ops_stored_state"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0014_insight_churn_stored.sql")


def downgrade() -> None:
    raise NotImplementedError("cdms migrations are forward-only; restore a backup instead")
