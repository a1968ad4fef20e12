"""Migrations: idempotent, all-or-nothing, forward-only but for the few that say how to go
back (0023)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from db.config import to_libpq_url
from db.migrate import current_revision, downgrade, head_revision, upgrade


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


def _history_rights(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Who may do what to app.order_status_history, and as whom its triggers run."""
    with psycopg.connect(to_libpq_url(url)) as conn:

        def rows(sql: str) -> list[tuple[object, ...]]:
            return conn.execute(sql).fetchall()

        return {
            "table": rows(
                "SELECT a.grantee::regrole::text, a.privilege_type FROM pg_class AS c,"
                " aclexplode(c.relacl) AS a WHERE c.oid = 'app.order_status_history'::regclass"
                " ORDER BY 1, 2"
            ),
            "schema": rows(
                "SELECT a.grantee::regrole::text, a.privilege_type FROM pg_namespace AS n,"
                " aclexplode(n.nspacl) AS a WHERE n.nspname = 'app' ORDER BY 1, 2"
            ),
            "functions": rows(
                "SELECT proname, prosecdef, proconfig, proowner::regrole::text"
                " FROM pg_proc WHERE pronamespace = 'app'::regnamespace"
                " AND proname IN ('orders_log_initial_status', 'orders_log_status_change')"
                " ORDER BY 1"
            ),
            "policies": rows(
                "SELECT policyname, cmd, roles::text[] FROM pg_policies"
                " WHERE schemaname = 'app' AND tablename = 'order_status_history' ORDER BY 1"
            ),
        }


def test_0023_goes_back_to_0022_as_it_was_and_forward_again(
    fresh_database: Callable[[], str],
) -> None:
    """0023 (the history written by its triggers only) has a downgrade: a database taken
    back is what 0022 made (compared with one migrated to 0022 from scratch); upgraded
    again, what head makes."""
    at_head = fresh_database()
    head = _history_rights(at_head)
    with psycopg.connect(to_libpq_url(at_head)) as conn:
        me = conn.execute("SELECT current_user::text").fetchone()
    assert me is not None
    assert [f[1:] for f in head["functions"]] == [
        (True, ["search_path=pg_catalog, pg_temp"], "cdms_owner")
    ] * 2
    api = [r for r in head["table"] if r[0] in ("cdms_api", "cdms_customer")]
    assert api == [("cdms_api", "SELECT"), ("cdms_customer", "SELECT")]

    before_0023 = fresh_database()
    with psycopg.connect(to_libpq_url(before_0023), autocommit=True) as conn:
        conn.execute("DROP SCHEMA app CASCADE; DROP SCHEMA dw CASCADE; DROP SCHEMA ml CASCADE")
        conn.execute("DELETE FROM alembic_version")
    upgrade(before_0023, "0022_incremental_indexes")
    then = _history_rights(before_0023)
    # as the caller, owned by the migrating role
    assert [f[1:] for f in then["functions"]] == [(False, None, me[0])] * 2

    assert downgrade(at_head, "0022_incremental_indexes") == (
        head_revision(),
        "0022_incremental_indexes",
    )
    assert _history_rights(at_head) == then
    upgrade(at_head)
    assert current_revision(at_head) == head_revision()
    assert _history_rights(at_head) == head
