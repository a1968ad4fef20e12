"""the prediction log holds each distinct prediction served to a principal once (a unique
key on model version, object, actor and the input's digest), not a row per read

Revision ID: 0026_prediction_log_once
Revises: 0025_value_bounds
"""

from db.migrations.sqlfile import run_sql_file

revision = "0026_prediction_log_once"
down_revision = "0025_value_bounds"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ml.prediction_log only: a nullable column (catalogue only) and a partial index (a scan
    # of the log under SHARE: the log's writer thread waits meanwhile, no request does)
    run_sql_file("0026_prediction_log_once.sql")


def downgrade() -> None:
    run_sql_file("0026_prediction_log_once_down.sql")
