"""The result cache across ETL runs: an answer stays cached while the versions since
changed nothing it read (a table, or a day of a fact table), and is computed again, equal
to an uncached one, when they did; the pipeline's publish step refreshes the rollups so
they stay usable."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, timedelta

from db.engine import make_engine
from etl import pipeline, runner
from semantic.answer import answer_statement
from semantic.planner import plan_query
from semantic.query import Condition, CubeQuery, Member, Op, ToDate
from semantic.scope import Scope, disjoint, scope
from semantic.service import CubeResult, execute, render
from semantic.shape import flat
from semantic.validate import default_model
from tests.semantic.conftest import d, load_warehouse, m, sql


def _until(days_ago: int) -> Condition:
    last = (date.today() - timedelta(days=days_ago)).isoformat()
    return Condition(Member("sales", "orderedAt"), Op.IN_DATE_RANGE, ("2000-01-01", last))


def _place_order(url: str) -> None:
    customer = sql(url, "SELECT min(id) FROM app.customers")[0][0]
    (product,) = sql(url, "SELECT id FROM app.products WHERE active AND stock > 5 LIMIT 1")[0]
    items = json.dumps([{"product_id": product, "quantity": 2}])
    sql(url, "SELECT app.place_order(%s, %s::jsonb, 'web', 'card')", (customer, items))


def _run(url: str, *, full: bool = False) -> None:
    try:
        pipeline.run(url, full=full)
    finally:
        runner.dispose(url)


def test_cache_keeps_answers_a_run_did_not_touch(fresh_database: Callable[[], str]) -> None:
    url = fresh_database()
    load_warehouse(url, 40, 300, 3)
    engine = make_engine(url)
    every = CubeQuery(
        measures=(m("sales.lineCount"), m("sales.revenue")), dimensions=(d("sales.channel"),)
    )
    past = CubeQuery(measures=every.measures, dimensions=every.dimensions, filters=(_until(3),))
    brands = CubeQuery(
        measures=(m("sales.lineCount"),), dimensions=(d("products.brand"),), filters=(_until(3),)
    )
    queries = (every, past, brands)

    def ask(q: CubeQuery) -> tuple[CubeResult, CubeResult]:
        with engine.connect() as conn:
            return execute(conn, q), execute(conn, q, use_rollups=False, use_cache=False)

    first = [ask(q)[0] for q in queries]
    assert not any(r.cached for r in first)
    assert all(ask(q)[0].cached for q in queries)
    assert first[0].rollups == ("sales.monthlyByCategory",)
    built = dict(sql(url, "SELECT name, version FROM dw_rollup.build"))
    assert set(built.values()) == {first[0].version} and len(built) == 4

    # today's order: the answers over days before it stay; the one over every day does not
    _place_order(url)
    _run(url)
    version = int(sql(url, "SELECT version FROM dw.etl_state")[0][0])
    assert version > first[0].version
    got = {i: ask(q) for i, q in enumerate(queries)}
    assert not got[0][0].cached and got[0][0].version == version
    web = {r["sales.channel"]: r["sales.lineCount"] for r in got[0][0].rows}
    before = {r["sales.channel"]: r["sales.lineCount"] for r in first[0].rows}
    assert web["web"] == before["web"] + 1
    for i in (1, 2):
        cached, fresh = got[i]
        assert cached.cached and cached.version == version, queries[i]
        assert cached.rows == fresh.rows == first[i].rows
    assert got[0][0].rows == got[0][1].rows
    assert set(dict(sql(url, "SELECT name, version FROM dw_rollup.build")).values()) == {version}

    # a type-1 change of a product sold before: the answers that read its facts' days or
    # its dimension are computed again, and equal an uncached answer
    (product,) = sql(
        url,
        "SELECT p.product_id FROM dw.fact_sales AS f JOIN dw.dim_product AS p USING (product_key)"
        " WHERE f.ordered_at < now() - interval '5 days' LIMIT 1",
    )[0]
    sql(url, "UPDATE app.products SET brand = 'Zeta Renamed' WHERE id = %s", (product,))
    _run(url)
    cached, fresh = ask(brands)
    assert not cached.cached and cached.rows == fresh.rows
    assert "Zeta Renamed" in {r["products.brand"] for r in cached.rows}
    for q in (every, past):
        cached, fresh = ask(q)
        assert not cached.cached and cached.rows == fresh.rows

    # a full load: nothing cached holds
    assert all(ask(q)[0].cached for q in queries)
    _run(url, full=True)
    assert not any(ask(q)[0].cached for q in queries)


def test_scope_bounds_a_fact_by_its_date_filter_only_when_nothing_reads_outside_it() -> None:
    model = default_model()
    past = (_until(3),)

    def of(q: CubeQuery) -> Scope:
        plan = plan_query(model, q)
        shape = flat([f.alias for f in q.measures], [f.alias for f in q.dimensions], "t")
        return scope(model, plan, render(answer_statement(model, plan, shape))[0])

    bounded = of(CubeQuery(measures=(m("sales.lineCount"),), filters=past))
    lo, hi = bounded["dw.fact_sales"] or (0, 0)
    assert lo == 19991231 and hi == int((date.today() - timedelta(days=2)).strftime("%Y%m%d"))
    by_brand = of(CubeQuery(measures=(m("sales.lineCount"),), dimensions=(d("products.brand"),)))
    assert by_brand["dw.fact_sales"] is None and by_brand["dw.dim_product"] is None
    running = of(
        CubeQuery(
            measures=(m("sales.lineCount", to_date=ToDate.YEAR),),
            dimensions=(d("sales.orderedAt", "month"),),
            filters=past,
        )
    )
    assert running["dw.fact_sales"] is None
    # bounds at the ends of the calendar: unbounded, not an overflow
    ancient = Condition(
        Member("sales", "orderedAt"), Op.IN_DATE_RANGE, ("0001-01-01", "2024-01-31")
    )
    assert (
        of(CubeQuery(measures=(m("sales.lineCount"),), filters=(ancient,)))["dw.fact_sales"] is None
    )
    # a version that changed only today's facts leaves the bounded answer, not the others
    today = int(date.today().strftime("%Y%m%d"))
    changes = {"dw.fact_sales": frozenset({today}), "dw.fact_orders": frozenset({today})}
    assert disjoint(bounded, changes)
    assert not disjoint(running, changes) and not disjoint(by_brand, changes)
    assert not disjoint(bounded, {"dw.fact_sales": None}) and not disjoint(bounded, None)
    assert disjoint(by_brand, {"dw.fact_returns": None})
