"""the warehouse's log of deleted app rows is written by its trigger only: it runs as
cdms_owner (SECURITY DEFINER), the API roles lose INSERT on dw.etl_source_delete

Revision ID: 0024_source_delete_by_trigger
Revises: 0023_history_by_triggers
"""

from db.migrations.sqlfile import run_sql_file

revision = "0024_source_delete_by_trigger"
down_revision = "0023_history_by_triggers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # grants and a function's rights: no app table is locked
    run_sql_file("0024_source_delete_by_trigger.sql")


def downgrade() -> None:
    run_sql_file("0024_source_delete_by_trigger_down.sql")
