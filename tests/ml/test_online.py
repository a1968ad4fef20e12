"""Online features (``ml.online``): the feature queries over the operational rows give, for
every object, exactly what the warehouse gives once it has loaded it - one definition, two
sources - and ``ml.batch.load`` answers for every existing object."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.engine import make_engine, set_local
from db.seed import seed
from etl import pipeline, runner
from ml import batch, online
from ml.feature_table import ORDERS, TABLES, TICKETS, fetch
from ml.features import kinds_of, load_ids
from ml.specs import ORDER_VALUE
from tests.ml.conftest import place_order
from tests.ml.test_feature_table import assert_same


@pytest.fixture
def loaded(fresh_database: Callable[[], str]) -> Iterator[Engine]:
    """A small shop, loaded once."""
    url = fresh_database()
    seed(url, 120, 1_200, 13)
    pipeline.run(url)
    engine = make_engine(url)
    yield engine
    runner.dispose(url)


def _ids(engine: Engine, query: str) -> list[int]:
    with engine.connect() as conn:
        return [int(i) for i in conn.execute(sa.text(query)).scalars()]


def test_online_features_equal_the_warehouses_after_a_load(loaded: Engine) -> None:
    for table in TABLES:
        ids = _ids(loaded, f"SELECT {table.key} FROM {table.fact}")
        with loaded.connect() as conn:
            computed = online.load(conn, table.sql_file, ids, table.kinds)
            stored = fetch(conn, table.sql_file, ids, table.kinds)
        assert len(computed) == len(ids) > 100
        assert_same(computed, stored)
    # customers' features are current ones (now()): both sources in one transaction
    ids = _ids(loaded, "SELECT id FROM app.customers")
    kinds = kinds_of(ORDER_VALUE)
    with loaded.connect() as conn, conn.begin():
        computed = online.load(conn, "customers.sql", ids, kinds)
        warehouse = load_ids(conn, "customers.sql", ids, kinds)
    assert len(computed) == len(ids)
    assert_same(computed, warehouse)


def test_a_new_order_and_ticket_have_features_before_the_load_and_the_same_after(
    loaded: Engine,
) -> None:
    with loaded.begin() as conn:
        customer, order = place_order(conn, quantity=3)
        ticket = conn.execute(
            sa.text("SELECT app.open_ticket(:c, 'delivery', 'high', 'email', 'Where?', :o)"),
            {"c": customer, "o": order},
        ).scalar_one()
    before = {}
    with loaded.connect() as conn:
        for kind, table, key in (("order", ORDERS, order), ("ticket", TICKETS, ticket)):
            assert len(fetch(conn, table.sql_file, [key], table.kinds)) == 0  # not loaded
            features = batch.load(conn, kind, [key])
            assert list(features.rows) == [key]
            before[kind] = features.frame

    pipeline.run(loaded.url.render_as_string(hide_password=False))

    with loaded.connect() as conn:
        for kind, table, key in (("order", ORDERS, order), ("ticket", TICKETS, ticket)):
            after = fetch(conn, table.sql_file, [key], table.kinds)
            assert after.keys.tolist() == [key]
            assert_same(before[kind], after)


def test_batch_load_mixes_both_sources_and_leaves_out_only_what_does_not_exist(
    loaded: Engine,
) -> None:
    old = _ids(loaded, "SELECT order_id FROM dw.fact_orders ORDER BY order_id LIMIT 3")
    with loaded.begin() as conn:
        _, new = place_order(conn)
    with loaded.connect() as conn:
        features = batch.load(conn, "order", [*old, new, 999_999_999])
        expected = load_ids(conn, "orders.sql", old, ORDERS.kinds)
    assert sorted(features.rows) == sorted([*old, new])
    assert_same(features.frame.take(features.frame.keys != new), expected)
    error = batch.not_in_warehouse("order", 999_999_999)
    assert error.code == "NOT_IN_WAREHOUSE" and "does not exist" in error.message


@pytest.fixture
def shop_12k(fresh_database: Callable[[], str]) -> Iterator[Engine]:
    """A shop of 12,000 orders (not loaded): big enough that reading every order line
    costs more than reaching a customer's through the indexes."""
    url = fresh_database()
    seed(url, 1_000, 12_000, 13)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("ANALYZE"))
    yield engine
    engine.dispose()


def test_online_features_run_on_a_generic_plan_through_the_indexes_and_leave_the_settings(
    shop_12k: Engine,
) -> None:
    """Once prepared, the online feature statement runs on a generic plan (PostgreSQL
    otherwise planned it on every run) that reaches a customer's order lines through the
    indexes, not by reading every line (which a generic plan, blind to how few customers
    the array holds, did at the default random_page_cost: 17.7 ms a run on the demo data
    against 2.9 ms); the transaction's own settings are back afterwards, and the features
    are the same on every run."""
    with shop_12k.begin() as conn:
        _customer, order = place_order(conn, quantity=2)
    kinds = kinds_of(*batch.KINDS["order"].specs)
    with shop_12k.connect() as conn:
        conn.execute(sa.text("SET LOCAL plan_cache_mode = force_custom_plan"))
        conn.execute(sa.text("SET LOCAL random_page_cost = 3.5"))
        frames = [online.load(conn, "orders.sql", [order], kinds) for _ in range(5)]
        scans = sa.text(
            "SELECT seq_scan FROM pg_stat_xact_user_tables"
            " WHERE schemaname = 'app' AND relname = 'order_items'"
        )
        before = conn.execute(scans).scalar_one()
        frames += [online.load(conn, "orders.sql", [order], kinds) for _ in range(3)]
        assert conn.execute(scans).scalar_one() == before  # the generic plan's runs
        assert conn.execute(sa.text("SHOW plan_cache_mode")).scalar_one() == "force_custom_plan"
        assert conn.execute(sa.text("SHOW random_page_cost")).scalar_one() == "3.5"
        generic = conn.execute(
            sa.text(
                "SELECT coalesce(sum(generic_plans), 0) FROM pg_prepared_statements"
                " WHERE strpos(statement, 'online_') > 0"
            )
        ).scalar_one()
    assert generic > 0  # its runs after the fifth (psycopg then prepares it)
    for frame in frames[1:]:
        assert_same(frames[0], frame)


def test_set_local_sets_several_settings_for_the_transaction_and_returns_the_old_ones(
    loaded: Engine,
) -> None:
    with loaded.connect() as conn:

        def show(name: str) -> str:
            return str(conn.execute(sa.text(f"SHOW {name}")).scalar_one())

        before = {"random_page_cost": show("random_page_cost"), "work_mem": show("work_mem")}
        was = set_local(conn, {"random_page_cost": "1.5", "work_mem": "8191kB"})
        assert was == before
        assert (show("random_page_cost"), show("work_mem")) == ("1.5", "8191kB")
        assert set_local(conn, was) == {"random_page_cost": "1.5", "work_mem": "8191kB"}
        assert show("work_mem") == before["work_mem"]
        set_local(conn, {"work_mem": "8190kB"})
        conn.commit()
        assert show("work_mem") == before["work_mem"]  # local to the transaction


def test_a_failed_online_statement_raises_its_own_error(loaded: Engine) -> None:
    """The settings around the statement are not put back after a failure (the aborted
    transaction ends them): a restore there failed too, and its InFailedSqlTransaction
    hid the statement's own error (a timeout answered INTERNAL instead of TIMEOUT)."""
    import psycopg

    kinds = kinds_of(*batch.KINDS["order"].specs)
    order = _ids(loaded, "SELECT max(id) FROM app.orders")[0]
    with loaded.connect() as locker, loaded.connect() as conn:
        locker.execute(sa.text("LOCK TABLE app.order_items IN ACCESS EXCLUSIVE MODE"))
        conn.execute(sa.text("SET LOCAL statement_timeout = 300"))
        with pytest.raises(sa.exc.DBAPIError) as err:
            online.load(conn, "orders.sql", [order], kinds)
        assert isinstance(err.value.orig, psycopg.errors.QueryCanceled), err.value.orig
        locker.rollback()
