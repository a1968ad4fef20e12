"""the order status history is written by its triggers only: they run as cdms_owner
(SECURITY DEFINER), the API roles lose INSERT, UPDATE and DELETE on it

Revision ID: 0023_history_by_triggers
Revises: 0022_incremental_indexes
"""

from db.migrations.sqlfile import run_sql_file

revision = "0023_history_by_triggers"
down_revision = "0022_incremental_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # DROP POLICY: ACCESS EXCLUSIVE on the history, briefly (after the file's @lock line)
    run_sql_file(
        "0023_history_by_triggers.sql",
        locks=("app.order_status_history",),
        mode="ACCESS EXCLUSIVE",
    )


def downgrade() -> None:
    # undone in full (only grants, functions' rights and two policies change): a database
    # taken back to 0022 is 0022's
    run_sql_file(
        "0023_history_by_triggers_down.sql",
        locks=("app.order_status_history",),
        mode="ACCESS EXCLUSIVE",
    )
