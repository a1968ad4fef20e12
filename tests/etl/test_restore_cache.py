"""The cube's result cache under a running server when the database under its URL is
replaced: by ``cdms db restore --force`` of another shop's backup, or by a database created
again (from a template too). The new history's version numbers may equal the old one's; an
answer cached before is not served for them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from db.backup import backup, restore
from db.engine import drop_database, ensure_database, make_engine
from etl import runner
from semantic.query import CubeQuery
from semantic.service import execute
from tests.semantic.conftest import d, load_warehouse, m, sql

Q = CubeQuery(measures=(m("sales.lineCount"),), dimensions=(d("sales.channel"),))


def _two_shops(fresh_database: Callable[[], str]) -> tuple[str, str, int, list[dict[str, Any]]]:
    """Two loaded warehouses of different shops at the same version number; ``url``'s
    answer is cached (its rows: the last item)."""
    url, other = fresh_database(), fresh_database()
    load_warehouse(url, 30, 200, 3)
    load_warehouse(other, 50, 500, 4)
    version = int(sql(url, "SELECT version FROM dw.etl_state")[0][0])
    sql(other, "UPDATE dw.etl_state SET version = %s", (version,))
    with make_engine(url).connect() as conn:
        before = list(execute(conn, Q).rows)
        assert execute(conn, Q).cached
    return url, other, version, before


def _asked_again(url: str, version: int, before: list[dict[str, Any]]) -> None:
    with make_engine(url).connect() as conn:
        got, fresh = execute(conn, Q), execute(conn, Q, use_cache=False)
    assert got.version == version
    assert not got.cached and got.rows == fresh.rows != before


def test_a_restore_under_the_same_url_is_not_answered_from_the_cache(
    fresh_database: Callable[[], str], tmp_path: Path
) -> None:
    url, other, version, before = _two_shops(fresh_database)
    backup(other, tmp_path / "other.dump")
    make_engine(url).dispose()
    restore(url, tmp_path / "other.dump", force=True)
    _asked_again(url, version, before)


def test_a_database_created_again_under_the_same_url_is_not_answered_from_the_cache(
    fresh_database: Callable[[], str], admin_url: str
) -> None:
    url, other, version, before = _two_shops(fresh_database)
    name, template = (u.rsplit("/", 1)[1].split("?", 1)[0] for u in (url, other))
    for u in (url, other):  # (no session may be open on either)
        make_engine(u).dispose()
        runner.dispose(u)
    drop_database(admin_url, name)
    ensure_database(admin_url, name, template=template)  # same relation oids as ``other``
    _asked_again(url, version, before)
