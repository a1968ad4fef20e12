"""required free text holds at least one visible character (rows without one cleaned)

Revision ID: 0038_visible_text
Revises: 0037_return_decision_comment
"""

from db.migrations.sqlfile import run_sql_file

revision = "0038_visible_text"
down_revision = "0037_return_decision_comment"
branch_labels = None
depends_on = None

# UPDATE then ALTER TABLE ... ADD CONSTRAINT: ACCESS EXCLUSIVE, briefly (a scan of each)
_TABLES = ("app.customers", "app.products", "app.support_tickets")


def upgrade() -> None:
    run_sql_file("0038_visible_text.sql", locks=_TABLES, mode="ACCESS EXCLUSIVE")


def downgrade() -> None:
    run_sql_file("0038_visible_text_down.sql", locks=_TABLES, mode="ACCESS EXCLUSIVE")
