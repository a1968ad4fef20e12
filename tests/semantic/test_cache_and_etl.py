"""The result cache keys on the warehouse version: an ETL run that changes dw invalidates it,
and the pipeline's publish step refreshes the rollups so they stay usable."""

from __future__ import annotations

import json
from collections.abc import Callable

from db.engine import make_engine
from etl import pipeline, runner
from semantic.query import CubeQuery
from semantic.service import CACHE, execute
from tests.semantic.conftest import d, load_warehouse, m, sql


def test_cache_hits_until_an_etl_run_changes_the_warehouse(
    fresh_database: Callable[[], str],
) -> None:
    url = fresh_database()
    load_warehouse(url, 40, 300, 3)
    engine = make_engine(url)
    q = CubeQuery(
        measures=(m("sales.lineCount"), m("sales.revenue")), dimensions=(d("sales.channel"),)
    )
    with engine.connect() as conn:
        first = execute(conn, q)
        again = execute(conn, q)
    assert not first.cached and again.cached
    assert again.rows == first.rows and again.version == first.version
    assert first.rollups == ("sales.monthlyByCategory",)
    built = dict(sql(url, "SELECT name, version FROM dw_rollup.build"))
    assert set(built.values()) == {first.version} and len(built) == 4

    customer = sql(url, "SELECT min(id) FROM app.customers")[0][0]
    (product,) = sql(url, "SELECT id FROM app.products WHERE active AND stock > 5 LIMIT 1")[0]
    items = json.dumps([{"product_id": product, "quantity": 2}])
    sql(url, "SELECT app.place_order(%s, %s::jsonb, 'web', 'card')", (customer, items))
    try:
        pipeline.run(url)
    finally:
        runner.dispose(url)
    assert len(CACHE) == 0  # the publish step cleared it

    with engine.connect() as conn:
        after = execute(conn, q)
        raw = execute(conn, q, use_rollups=False, use_cache=False)
    assert not after.cached and after.version > first.version
    assert after.rollups == ("sales.monthlyByCategory",)  # refreshed for the new version
    web = {r["sales.channel"]: r["sales.lineCount"] for r in after.rows}
    before = {r["sales.channel"]: r["sales.lineCount"] for r in first.rows}
    assert web["web"] == before["web"] + 1
    assert after.rows == raw.rows
    assert set(dict(sql(url, "SELECT name, version FROM dw_rollup.build")).values()) == {
        after.version
    }
