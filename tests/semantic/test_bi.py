"""``cdms bi publish``: one view per cube in schema ``bi`` and a login role that reads them
and nothing else. Plain SQL over the views, run as that role, answers what ``cube`` answers;
the role is denied the application's tables; publishing again is a no-op until the model
changes, and the ETL then republishes."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import psycopg
import pytest
from psycopg import errors
from sqlalchemy.engine import Engine

from db.config import to_libpq_url
from db.engine import make_engine
from db.errors import ConfigError
from etl import pipeline
from semantic import bi
from semantic.validate import default_model
from tests.api.conftest import make_client
from tests.api.helpers import body_of
from tests.cli import run_cdms
from tests.semantic.conftest import num, sql


def role_for(url: str, what: str = "") -> str:
    """Roles are cluster-wide: one name per test database."""
    db = url.rsplit("/", 1)[1].split("?", 1)[0]
    return f"cdms_bi_t{hashlib.sha1((db + what).encode()).hexdigest()[:12]}"


def as_role(url: str, role: str) -> str:
    scheme, rest = to_libpq_url(url).split("://", 1)
    return f"{scheme}://{role}@{rest.split('@', 1)[1]}"


def unpublish(url: str, role: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA IF EXISTS bi CASCADE")
        bi.drop_role(conn, role)


@pytest.fixture(scope="module")
def role(wh: Engine, warehouse_url: str) -> Iterator[str]:
    name = role_for(warehouse_url)
    with wh.begin() as conn:
        bi.publish(conn, default_model(), name, None)
    yield name
    unpublish(warehouse_url, name)


@pytest.fixture(scope="module")
def analyst_sql(warehouse_url: str, role: str) -> Callable[..., list[tuple[Any, ...]]]:
    def run(query: str) -> list[tuple[Any, ...]]:
        return sql(as_role(warehouse_url, role), query)

    return run


@pytest.fixture(scope="module")
def cube(wh: Engine) -> Iterator[Callable[[str], list[dict[str, Any]]]]:
    with make_client(wh) as client:

        def run(query: str) -> list[dict[str, Any]]:
            body = body_of(client.post("/graphql", json={"query": query}))
            assert "errors" not in body, body
            rows: list[dict[str, Any]] = body["data"]["cube"]
            return rows

        yield run


def test_revenue_by_month_and_category_equals_the_cube(
    cube: Callable[[str], list[dict[str, Any]]], analyst_sql: Callable[..., list[Any]]
) -> None:
    rows = cube(
        '{ cube(timezone: "UTC", limit: 50000) '
        "{ sales { revenue orderCount orderedAt { month } } products { category } } }"
    )
    got = {
        (r["sales"]["orderedAt"]["month"], r["products"]["category"]): (
            num(r["sales"]["revenue"]),
            r["sales"]["orderCount"],
        )
        for r in rows
    }
    want = analyst_sql(
        """SELECT to_char(date_trunc('month', ordered_at AT TIME ZONE 'UTC'),
                          'YYYY-MM-DD"T"HH24:MI:SS'), products_category,
                  sum(revenue), count(DISTINCT order_id)
           FROM bi.sales GROUP BY 1, 2"""
    )
    assert len(want) > 20
    assert got == {(m, c): (num(r), n) for m, c, r, n in want}


def test_revenue_by_rfm_segment_of_the_month_equals_the_cube(
    cube: Callable[[str], list[dict[str, Any]]], analyst_sql: Callable[..., list[Any]]
) -> None:
    rows = cube(
        '{ cube(timezone: "UTC") { sales { revenue orderCount } customers { rfmSegment } } }'
    )
    got = {
        r["customers"]["rfmSegment"]: (num(r["sales"]["revenue"]), r["sales"]["orderCount"])
        for r in rows
    }
    want = analyst_sql(
        """SELECT customers_rfm_segment, sum(revenue), count(DISTINCT order_id)
           FROM bi.sales GROUP BY 1"""
    )
    assert len(want) > 5
    assert got == {s: (num(r), n) for s, r, n in want}


def test_return_rate_by_segment_equals_the_cube(
    cube: Callable[[str], list[dict[str, Any]]], analyst_sql: Callable[..., list[Any]]
) -> None:
    rows = cube("{ cube { returns { returnRate count } customers { segment } } }")
    got = {
        r["customers"]["segment"]: (num(r["returns"]["returnRate"]), r["returns"]["count"])
        for r in rows
    }
    want = analyst_sql(
        """WITH r AS (SELECT customers_segment s, sum(quantity) q, sum(returns_count) n
                      FROM bi.returns GROUP BY 1),
                s AS (SELECT customers_segment s, sum(quantity) q FROM bi.sales GROUP BY 1)
           SELECT s.s, r.q::numeric / NULLIF(s.q, 0), coalesce(r.n, 0)
           FROM s LEFT JOIN r USING (s)"""
    )
    assert len(want) == 3 and all(rate for _, rate, _ in want)
    assert got == {s: (num(rate), n) for s, rate, n in want}


def test_orders_by_status_equals_the_cube(
    cube: Callable[[str], list[dict[str, Any]]], analyst_sql: Callable[..., list[Any]]
) -> None:
    rows = cube("{ cube { orders { count cancellationRate status } } }")
    got = {
        r["orders"]["status"]: (r["orders"]["count"], num(r["orders"]["cancellationRate"]))
        for r in rows
    }
    want = analyst_sql(
        """SELECT status, sum(orders_count),
                  sum(cancelled_count)::numeric / NULLIF(sum(orders_count), 0)
           FROM bi.orders GROUP BY 1"""
    )
    assert got == {s: (n, num(rate)) for s, n, rate in want}
    assert sum(n for n, _ in got.values()) == 3000


def test_the_role_reads_bi_and_nothing_else(warehouse_url: str, role: str) -> None:
    with psycopg.connect(as_role(warehouse_url, role), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM bi.customers").fetchone() != (0,)
        assert conn.execute("SELECT count(*) FROM sales").fetchone() != (0,)  # search_path
        for table in (
            "app.customers",
            "app.orders",
            "dw.fact_sales",
            "dw.dim_customer",
            "ml.model_version",
            "dw_rollup.build",
            "public.alembic_version",
        ):
            with pytest.raises((errors.InsufficientPrivilege, errors.UndefinedTable)):
                conn.execute(f"SELECT * FROM {table} LIMIT 1")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM app.customers LIMIT 1")
        with pytest.raises(errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE bi.mine (x int)")
        with pytest.raises((errors.InsufficientPrivilege, errors.ReadOnlySqlTransaction)):
            conn.execute("SET default_transaction_read_only = off; CREATE TABLE bi.mine (x int)")
        # what an analyst may not see in the cube is not published either
        cols = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'bi'"
            )
        }
        assert "products_unit_cost" not in cols and "unit_cost" not in cols
        assert {"revenue", "products_category", "customers_segment", "segment_completed"} <= cols


def test_publish_is_idempotent_and_follows_model_changes(
    wh: Engine, warehouse_url: str, role: str
) -> None:
    model = default_model()
    with wh.begin() as conn:
        first = bi.publish(conn, model, role, None)
        assert bi.republish_if_changed(conn, model) is None
        assert bi.published_fingerprint(conn) == first.fingerprint
    assert first.views == [c.name for c in model.cubes] and role in first.readers
    # a model without sales.discount: the ETL's publish step republishes, grants kept
    sales = model.cube("sales")
    assert sales is not None
    changed = replace(
        model,
        cubes=tuple(
            replace(c, measures=tuple(m for m in c.measures if m.name != "discount"))
            if c is sales
            else c
            for c in model.cubes
        ),
    )
    try:
        with wh.begin() as conn:
            again = bi.republish_if_changed(conn, changed)
        assert again is not None and again.readers == [role]
        cols = [r[0] for r in sql(as_role(warehouse_url, role), "SELECT * FROM bi.sales LIMIT 0")]
        assert cols == []  # LIMIT 0: no rows, but readable
        names = sql(
            warehouse_url,
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = 'bi' AND table_name = 'sales'",
        )
        assert ("discount",) not in names and ("revenue",) in names
        result = pipeline.run(warehouse_url)  # the shipped model again: published back
        assert result.run_id
        with wh.connect() as conn:
            assert bi.published_fingerprint(conn) == first.fingerprint
    finally:
        with wh.begin() as conn:
            bi.publish(conn, model, role, None)


def test_two_publishes_at_once_both_succeed(wh: Engine, role: str) -> None:
    """``cdms bi publish`` is idempotent, also when run twice at once (two operators, a
    deploy job): the second waits for the first instead of failing on the role's catalog
    row ("tuple concurrently updated", error[DATABASE])."""
    import threading
    import time

    model = default_model()
    failures: list[BaseException] = []

    def second() -> None:
        try:
            with wh.begin() as conn:
                bi.publish(conn, model, role, None)
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)

    with wh.begin() as conn:
        bi.publish(conn, model, role, None)
        other = threading.Thread(target=second)
        other.start()
        time.sleep(1.0)  # the second publish reaches the role while this one holds it
    other.join(30)
    assert not other.is_alive() and failures == [], failures


def test_a_role_not_made_by_publish_is_refused(wh: Engine, warehouse_url: str) -> None:
    other = role_for(warehouse_url, "other")
    with wh.begin() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {other} NOLOGIN")
    try:
        with wh.begin() as conn, pytest.raises(ConfigError, match="not a cdms BI role"):
            bi.ensure_role(conn, other, "pw")
        with wh.begin() as conn:
            bi.drop_role(conn, other)  # not ours: left alone
            assert (
                conn.exec_driver_sql(
                    f"SELECT count(*) FROM pg_roles WHERE rolname = '{other}'"
                ).scalar()
                == 1
            )
    finally:
        with wh.begin() as conn:
            conn.exec_driver_sql(f"DROP ROLE {other}")
    for name in ("cdms_api", "postgres", "pg_monitor", "x; DROP ROLE postgres", "Upper"):
        with pytest.raises(ConfigError):
            bi.check_role_name(name)


def test_cli_publishes_with_a_password(
    fresh_database: Callable[[], str], cli_env: dict[str, str]
) -> None:
    url = fresh_database()
    name = role_for(url, "cli")
    env = cli_env | {"DATABASE_URL": url, "CDMS_BI_ROLE": name, "CDMS_BI_PASSWORD": "s3cr'et"}
    try:
        for _ in range(2):
            done = run_cdms(env, "bi", "publish")
            assert done.returncode == 0, done.stderr
            assert "schema bi: 10 views" in done.stdout and name in done.stdout
        rows = sql(
            url,
            "SELECT rolcanlogin, rolpassword IS NOT NULL FROM pg_authid WHERE rolname = %s",
            (name,),
        )
        assert rows == [(True, True)]
        bad = run_cdms(env | {"CDMS_BI_ROLE": "Robert'); DROP"}, "bi", "publish")
        assert bad.returncode == 1 and "CDMS_BI_ROLE" in bad.stderr
    finally:
        unpublish(url, name)


def test_docs_list_every_formula() -> None:
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "bi.md").read_text()
    for v in bi.views(default_model()):
        assert f"### bi.{v.cube}\n" in text
        for f in v.formulas:
            assert f"| `{v.cube}.{f.measure}` | `{f.sql}` |" in text, f.measure
