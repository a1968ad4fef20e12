"""every free-text column a client writes has a length limit (named by its field)

Revision ID: 0019_text_limits
Revises: 0018_cache_scopes
"""

from db.migrations.sqlfile import run_sql_file

revision = "0019_text_limits"
down_revision = "0018_cache_scopes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ALTER TABLE ... ADD CONSTRAINT: ACCESS EXCLUSIVE, briefly (a scan of each table)
    run_sql_file(
        "0019_text_limits.sql",
        locks=(
            "app.customers",
            "app.products",
            "app.feedback",
            "app.returns",
            "app.support_tickets",
        ),
        mode="ACCESS EXCLUSIVE",
    )


def downgrade() -> None:
    raise NotImplementedError("cdms migrations are forward-only; restore a backup instead")
