"""Rollups kept by adding up fact deltas equal a rebuild from the facts after every run,
whatever the runs did (new orders, status changes, returns, deleted orders, changed lines,
dimension changes), and a run that fails or stops half-way leaves deltas the next one
applies exactly once."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from typing import Any

import psycopg
import pytest

from db.config import to_libpq_url
from db.engine import make_engine
from etl import pipeline, runner
from etl.errors import StepFailedError
from etl.runner import Silent
from semantic.rollup_delta import maintainable
from semantic.rollups import build_all, build_sql
from semantic.sources import rollup_table
from semantic.validate import default_model
from tests.etl.conftest import one, request_random_return, sql

CHANNELS = ("web", "mobile", "store", "phone", "marketplace")


def _rollups() -> list[tuple[str, str]]:
    """(name, table) of every declared rollup."""
    model = default_model()
    return [
        (f"{c.name}.{p.name}", f"dw_rollup.{rollup_table(c.name, p)}")
        for c in model.cubes
        for p in c.pre_aggregations
    ]


def _rows(url: str, relation: str) -> list[str]:
    return [r[0] for r in sql(url, f"SELECT r::text FROM {relation} AS r ORDER BY 1")]


def assert_rollups_equal_a_rebuild(url: str) -> None:
    """Each rollup table holds exactly the rows its definition gives over the facts now."""
    model = default_model()
    for cube in model.cubes:
        for p in cube.pre_aggregations:
            table = f"dw_rollup.{rollup_table(cube.name, p)}"
            rebuilt = _rows(url, f"({build_sql(model, cube.name, p)})")
            assert _rows(url, table) == rebuilt, f"{cube.name}.{p.name}"


def _how(url: str) -> dict[str, int | None]:
    return dict(sql(url, "SELECT name, delta_seq FROM dw_rollup.build"))


def _shop_change(url: str, rng: random.Random) -> None:
    """One random change a shop makes, through its procedures where it has them."""
    kind = rng.choice(
        ["place", "place", "status", "status", "status", "return", "delete", "line", "scd2"]
    )
    with psycopg.connect(to_libpq_url(url), autocommit=True) as conn:

        def ids(query: str, params: Any = None) -> list[Any]:
            return [r[0] for r in conn.execute(query, params).fetchall()]

        if kind == "place":
            customer = rng.choice(ids("SELECT id FROM app.customers"))
            products = ids("SELECT id FROM app.products WHERE active AND stock > 5 ORDER BY id")
            items = [
                {"product_id": p, "quantity": rng.randint(1, 3)}
                for p in rng.sample(products, rng.randint(1, 3))
            ]
            conn.execute(
                "SELECT app.place_order(%s, %s::jsonb, %s, 'card')",
                (customer, json.dumps(items), rng.choice(CHANNELS)),
            )
        elif kind == "status":
            # (a delivered order becomes returned through its returns only: kind "return")
            nxt = {"pending": ["paid", "cancelled"], "paid": ["shipped", "cancelled"],
                   "shipped": ["delivered"]}  # fmt: skip
            status = rng.choice(list(nxt))
            found = ids("SELECT id FROM app.orders WHERE status = %s ORDER BY id", (status,))
            if found:
                order = rng.choice(found)
                conn.execute(
                    "SELECT app.set_order_status(%s, %s)", (order, rng.choice(nxt[status]))
                )
        elif kind == "return":
            ret = request_random_return(conn, rng)
            if ret is not None:
                conn.execute("SELECT app.approve_return(%s)", (ret,))
        elif kind == "delete":
            found = ids(
                "SELECT o.id FROM app.orders AS o WHERE o.status = 'cancelled'"
                " AND NOT EXISTS (SELECT 1 FROM app.feedback f WHERE f.order_id = o.id)"
                " AND NOT EXISTS (SELECT 1 FROM app.support_tickets t WHERE t.order_id = o.id)"
                " AND NOT EXISTS (SELECT 1 FROM app.returns r WHERE r.order_id = o.id)"
                " ORDER BY o.id"
            )
            if found:
                conn.execute("DELETE FROM app.orders WHERE id = %s", (rng.choice(found),))
        elif kind == "line":
            found = conn.execute(
                "SELECT i.order_id, i.line_no FROM app.order_items AS i"
                " JOIN app.orders AS o ON o.id = i.order_id WHERE o.status = 'pending'"
                " ORDER BY 1, 2"
            ).fetchall()
            if found:
                order, line = rng.choice(found)
                conn.execute(
                    "UPDATE app.order_items SET quantity = quantity + 1"
                    " WHERE order_id = %s AND line_no = %s",
                    (order, line),
                )
        else:  # an SCD2 change of a customer, then an order of theirs
            customer = rng.choice(ids("SELECT id FROM app.customers ORDER BY id"))
            country = rng.choice(["Norway", "Chile", "Japan", "Kenya"])
            conn.execute(
                "UPDATE app.customers SET segment = %s, country = %s WHERE id = %s",
                (rng.choice(["consumer", "corporate", "home_office"]), country, customer),
            )


@pytest.mark.parametrize("seed", [1, 2])
def test_rollups_added_up_from_deltas_equal_a_rebuild_after_every_run(
    loaded_shop: str, seed: int
) -> None:
    url = loaded_shop
    rng = random.Random(seed)
    built_at = dict(sql(url, "SELECT name, built_at FROM dw_rollup.build"))
    for _ in range(6):
        for _ in range(rng.randint(2, 8)):
            _shop_change(url, rng)
        result = pipeline.run(url)
        assert result.changed
        assert_rollups_equal_a_rebuild(url)
        # every rollup holds every delta and none is kept
        upto = one(url, "SELECT delta_pruned FROM dw.etl_state")
        assert set(_how(url).values()) == {upto}
        assert one(url, "SELECT count(*) FROM dw.fact_delta") == 0
    # added up, never rebuilt
    assert dict(sql(url, "SELECT name, built_at FROM dw_rollup.build")) == built_at


def _place(url: str, channel: str) -> None:
    customer = one(url, "SELECT min(id) FROM app.customers")
    product = one(url, "SELECT min(id) FROM app.products WHERE active AND stock > 5")
    items = json.dumps([{"product_id": product, "quantity": 1}])
    sql(url, "SELECT app.place_order(%s, %s::jsonb, %s, 'card')", (customer, items, channel))


def test_a_run_adds_up_the_changed_rows_and_rewrites_no_other(loaded_shop: str) -> None:
    """The rows of a touched bucket that no changed fact falls in are left as they are (a
    bucket re-aggregated would rewrite a row that differs from the facts)."""
    url = loaded_shop
    daily = "dw_rollup.orders_daily"
    _place(url, "web")
    pipeline.run(url)
    row = "bucket = date_trunc('day', now() AT TIME ZONE 'UTC') AND orders_status = 'pending'"
    sql(url, f"UPDATE {daily} SET m_count = m_count + 1000 WHERE {row} AND orders_channel = 'web'")
    _place(url, "phone")
    pipeline.run(url)
    # today's bucket took the new order; its web row still has what was written into it
    assert one(url, f"SELECT m_count >= 1000 FROM {daily} WHERE {row} AND orders_channel = 'web'")
    assert one(url, f"SELECT m_count FROM {daily} WHERE {row} AND orders_channel = 'phone'") >= 1


def test_a_step_that_fails_after_writing_its_deltas_leaves_none(loaded_shop: str) -> None:
    """Deltas commit with the facts they describe: a fact step that fails writes neither,
    the steps before it committed both, and the next run adds up each change once."""
    url = loaded_shop
    rng = random.Random(5)
    for _ in range(6):
        _shop_change(url, rng)
    customer = one(url, "SELECT min(id) FROM app.customers")
    product = one(url, "SELECT min(id) FROM app.products WHERE active AND stock > 5")
    items = json.dumps([{"product_id": product, "quantity": 2}])
    sql(url, "SELECT app.place_order(%s, %s::jsonb, 'web', 'card')", (customer, items))
    # fact_orders fails once its deltas are written (fact_sales, before it, commits)
    sql(
        url,
        """
        CREATE FUNCTION dw.fail_orders_delta() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'injected failure'; END $$;
        CREATE TRIGGER fail_orders_delta AFTER INSERT ON dw.fact_delta
        FOR EACH ROW WHEN (NEW.fact_table = 'dw.fact_orders')
        EXECUTE FUNCTION dw.fail_orders_delta();
        """,
    )
    with pytest.raises(StepFailedError, match="injected failure"):
        pipeline.run(url)
    failed = one(url, "SELECT max(run_id) FROM dw.etl_run")
    tables = dict(
        sql(
            url,
            "SELECT fact_table, count(*) FROM dw.fact_delta WHERE run_id = %s GROUP BY 1",
            (failed,),
        )
    )
    assert tables.get("dw.fact_sales", 0) > 0
    assert "dw.fact_orders" not in tables
    sql(url, "DROP TRIGGER fail_orders_delta ON dw.fact_delta")

    pipeline.run(url)
    assert_rollups_equal_a_rebuild(url)


def test_a_run_stopped_after_its_load_then_a_rebuild_adds_nothing_twice(
    loaded_shop: str,
) -> None:
    """A rollup rebuilt while deltas wait (by ``cdms semantic rollups build``) holds them
    already: the next publish adds only the later ones."""
    url = loaded_shop
    rng = random.Random(7)
    for _ in range(6):
        _shop_change(url, rng)
    engine = runner.etl_engine(url)
    with runner.advisory_lock(url, wait=True):  # a run that stops after its load
        result = runner.start(engine, full=False)
        runner.load(engine, result, Silent())
    assert one(url, "SELECT count(*) FROM dw.fact_delta") > 0
    build_all(make_engine(url), default_model(), force=True)
    for _ in range(4):
        _shop_change(url, rng)
    pipeline.run(url)
    assert_rollups_equal_a_rebuild(url)


def test_rollups_without_a_delta_history_catch_up_by_buckets(loaded_shop: str) -> None:
    """A rollup that does not know which deltas it holds (built before they were kept)
    re-aggregates its touched buckets once, then adds up deltas."""
    url = loaded_shop
    sql(url, "UPDATE dw_rollup.build SET delta_seq = NULL")
    rng = random.Random(3)
    for _ in range(2):
        for _ in range(5):
            _shop_change(url, rng)
        pipeline.run(url)
        assert_rollups_equal_a_rebuild(url)
        assert None not in _how(url).values()


def test_a_type1_change_of_a_dimension_reaggregates(loaded_shop: str) -> None:
    """A brand renamed changes what the facts of that product stand for without changing
    them: a marker, and the rollups of those facts re-aggregate their touched buckets."""
    url = loaded_shop
    product, day = one(url, "SELECT product_id, ordered_at FROM dw.fact_sales LIMIT 1")
    # a row of a bucket the change touches, wrong: only a re-aggregation puts it right
    sql(
        url,
        "UPDATE dw_rollup.sales_daily SET m_quantity = m_quantity + 1000"
        " WHERE bucket = date_trunc('day', CAST(%s AS timestamptz) AT TIME ZONE 'UTC')",
        (day,),
    )
    sql(url, "UPDATE app.products SET brand = 'Renamed' WHERE id = %s", (product,))
    run = pipeline.run(url)
    assert run.changed
    assert_rollups_equal_a_rebuild(url)
    assert one(url, "SELECT count(*) FROM dw.fact_delta") == 0


def test_the_declared_rollups_add_up_and_others_reaggregate(loaded_shop: str) -> None:
    """Every declared rollup is kept by deltas, so is one by a type-1 attribute (its
    changes come as markers); one with a count-distinct measure, a dimension read through
    another cube's join, or over a table without deltas is not."""
    model = default_model()
    sources = pipeline.DELTA_SOURCES
    with make_engine(loaded_shop).connect() as conn:
        for cube in model.cubes:
            for p in cube.pre_aggregations:
                assert maintainable(conn, model, cube, p, sources), f"{cube.name}.{p.name}"
        sales = model.cube("sales")
        assert sales is not None
        p = sales.pre_aggregations[0]
        for other in (
            replace(p, measures=(*p.measures, "orderCount")),  # count_distinct
            replace(p, dimensions=(*p.dimensions, "customers.rfmSegment")),  # via rfm
            replace(p, measures=("revenue",), dimensions=("products.brand",)),
        ):
            expected = other.dimensions == ("products.brand",)  # a type-1 attribute: markers
            assert maintainable(conn, model, sales, other, sources) is expected
        orders = model.cube("orders")
        assert orders is not None
        no_facts = replace(sources, facts=frozenset())
        assert not maintainable(conn, model, orders, orders.pre_aggregations[0], no_facts)
