"""Apply one plain ``.sql`` file from ``db/sql/`` inside the migration's transaction."""

from __future__ import annotations

from pathlib import Path

from alembic import op

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"


def run_sql_file(name: str) -> None:
    text = (SQL_DIR / name).read_text(encoding="utf-8")
    # Hand the file to psycopg untouched: no bind-parameter parsing of ':' or '%'.
    driver_conn = op.get_bind().connection.driver_connection
    assert driver_conn is not None
    driver_conn.execute(text.encode("utf-8"))
