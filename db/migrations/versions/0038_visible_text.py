"""the names, a product's name and a ticket's subject hold at least one visible character
(rows without one cleaned); in two transactions, so that no scan runs under ACCESS EXCLUSIVE

Revision ID: 0038_visible_text
Revises: 0037_return_decision_comment
"""

from alembic import op

from db.migrations.sqlfile import run_sql_file

revision = "0038_visible_text"
down_revision = "0037_return_decision_comment"
branch_labels = None
depends_on = None

# ALTER TABLE ... ADD CONSTRAINT ... NOT VALID: ACCESS EXCLUSIVE, for a catalogue change only
_TABLES = ("app.customers", "app.products", "app.support_tickets")


def _commit() -> None:
    """Commit what the revision made so far, releasing its locks; the revision goes on in a
    new transaction, which its stamp is committed with (alembic's autocommit block, made for
    this: env.py runs each revision in its own transaction)."""
    with op.get_context().autocommit_block():
        pass


def upgrade() -> None:
    # 1. the functions, then the CHECKs NOT VALID under ACCESS EXCLUSIVE (milliseconds),
    #    committed; 2. the rows rewritten and the CHECKs validated, readers and writers going
    #    on (ROW EXCLUSIVE, SHARE UPDATE EXCLUSIVE). Cut between them, the database is at
    #    0037 with step 1 made, which the next upgrade makes again (0038_visible_text.sql)
    run_sql_file("0038_visible_text.sql", locks=_TABLES, mode="ACCESS EXCLUSIVE")
    _commit()
    run_sql_file("0038_visible_text_rows.sql")


def downgrade() -> None:
    run_sql_file("0038_visible_text_down.sql", locks=_TABLES, mode="ACCESS EXCLUSIVE")
    _commit()
    run_sql_file("0038_visible_text_down_rows.sql")
