"""a customer principal places at most 100 orders and opens at most 20 support tickets in
24 hours (as feedback's 20 since 0028)

Revision ID: 0030_customer_daily_limits
Revises: 0029_customer_actor
"""

from db.migrations.sqlfile import run_sql_file

revision = "0030_customer_daily_limits"
down_revision = "0029_customer_actor"
branch_labels = None
depends_on = None

TABLES = ("app.orders", "app.support_tickets")


def upgrade() -> None:
    # the function first, holding nothing; then CREATE TRIGGER (catalogue only)
    run_sql_file("0030_customer_daily_limits.sql", locks=TABLES, mode="SHARE ROW EXCLUSIVE")


def downgrade() -> None:
    run_sql_file("0030_customer_daily_limits_down.sql", locks=TABLES, mode="SHARE ROW EXCLUSIVE")
