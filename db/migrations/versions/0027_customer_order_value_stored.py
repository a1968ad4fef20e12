"""Customer.expectedOrderValue stored per customer per day beside the churn risk
(ml.customer_predictions.order_value_*), the view ml.stored_predictions listing them

Revision ID: 0027_customer_order_value_stored
Revises: 0026_prediction_log_once
"""

from db.migrations.sqlfile import run_sql_file

revision = "0027_customer_order_value_stored"
down_revision = "0026_prediction_log_once"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ml only: three nullable columns and a CHECK (a scan of ml.customer_predictions, one row
    # per customer, under ACCESS EXCLUSIVE: the API's reads of it wait a moment), the view
    run_sql_file("0027_customer_order_value_stored.sql")


def downgrade() -> None:
    run_sql_file("0027_customer_order_value_stored_down.sql")
