"""Migrations: idempotent, forward-only, all-or-nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from db.config import to_libpq_url
from db.migrate import current_revision, head_revision, upgrade


def test_upgrade_reaches_head_and_creates_the_three_schemas(database_url: str) -> None:
    assert current_revision(database_url) == head_revision()
    with psycopg.connect(to_libpq_url(database_url)) as conn:
        schemas = {
            r[0]
            for r in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname IN ('app','dw','ml')"
            )
        }
    assert schemas == {"app", "dw", "ml"}


def test_upgrade_twice_is_a_no_op(fresh_database: Callable[[], str]) -> None:
    url = fresh_database()
    before, after = upgrade(url)
    assert before == after == head_revision()

    def catalog() -> list[tuple[object, ...]]:
        with psycopg.connect(to_libpq_url(url)) as conn:
            return conn.execute(
                "SELECT n.nspname, c.relname, c.relkind FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname IN ('app','dw','ml') ORDER BY 1, 2"
            ).fetchall()

    first = catalog()
    upgrade(url)
    assert catalog() == first
    assert len(first) > 20


def test_a_failing_revision_leaves_the_database_at_the_previous_one(
    fresh_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each revision is one transaction: a broken SQL file rolls back entirely."""
    from db.migrations import sqlfile

    url = fresh_database()
    with psycopg.connect(to_libpq_url(url), autocommit=True) as conn:
        conn.execute("DROP SCHEMA app CASCADE; DROP SCHEMA dw CASCADE; DROP SCHEMA ml CASCADE")
        conn.execute("DELETE FROM alembic_version")
    original = sqlfile.run_sql_file

    def broken(name: str, **kwargs: Any) -> None:
        original(name, **kwargs)
        if name.startswith("0002"):
            raise RuntimeError("boom after applying 0002")

    # alembic loads the revision modules afresh, so they pick up the patched function
    monkeypatch.setattr(sqlfile, "run_sql_file", broken)
    with pytest.raises(RuntimeError, match="boom"):
        upgrade(url)
    assert current_revision(url) == "0001_schemas"
    with psycopg.connect(to_libpq_url(url)) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'app'").fetchone()
    assert tables == (0,)
