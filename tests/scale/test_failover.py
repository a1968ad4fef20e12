"""Failover with a multi-host ``DATABASE_URL``: libpq's ``host=a,b`` with
``target_session_attrs=read-write`` connects to whichever listed server takes writes; when
the primary stops and its synchronous standby is promoted, the same app (no restart)
places orders on the new primary, and every order acknowledged before is there."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from db.config import DbSettings
from db.engine import database_url, dispose_engine, make_engine
from db.migrate import upgrade
from ml.serving import close_store_of
from tests.api.conftest import Shop, build_shop, make_client
from tests.scale.cluster import Cluster, Server, pg_bin, wait_for

pytestmark = pytest.mark.scale

PLACE = """mutation ($input: PlaceOrderInput!) { placeOrder(input: $input) { id } }"""


def _url(*servers: Server) -> str:
    hosts = ",".join(f"127.0.0.1:{s.port}" for s in servers)
    return f"postgresql://postgres@{hosts}/cdms?target_session_attrs=read-write&connect_timeout=2"


@pytest.fixture
def pair(cluster: Cluster) -> Iterator[tuple[Server, Server, Shop]]:
    """A primary and a synchronous standby of their own (this test promotes it)."""
    bindir = pg_bin()
    assert bindir is not None
    own = Cluster(bindir, Path(tempfile.mkdtemp(prefix="cdms-failover-")))
    try:
        primary = own.primary()
        primary.sql("CREATE DATABASE cdms")
        upgrade(primary.url("cdms"))
        engine = make_engine(primary.url("cdms"))
        with engine.begin() as conn:
            shop = build_shop(conn)
        dispose_engine(primary.url("cdms"))
        standby = own.standby(primary, "standby", cluster_name="'standby'")
        primary.sql("ALTER SYSTEM SET synchronous_standby_names = '*'")
        primary.sql("SELECT pg_reload_conf()")
        wait_for(lambda: primary.sql(
            "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'") == 1)  # fmt: skip
        yield primary, standby, shop
    finally:
        own.close()


def test_connects_to_the_read_write_server_of_those_listed(
    pair: tuple[Server, Server, Shop],
) -> None:
    primary, standby, _ = pair
    url = database_url(DbSettings(database_url=_url(standby, primary), statement_timeout_ms=1000))
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pg_is_in_recovery(), current_setting('port')").fetchone()
    assert row == (False, str(primary.port))


def test_orders_continue_on_the_promoted_standby_without_a_restart(
    pair: tuple[Server, Server, Shop],
) -> None:
    primary, standby, shop = pair
    url = _url(primary, standby)
    engine = make_engine(url)
    place = {"customerId": str(shop.customers[1]), "channel": "WEB", "paymentMethod": "CARD",
             "items": [{"productId": str(shop.products[0]), "quantity": 1}]}  # fmt: skip
    acknowledged: list[str] = []
    statuses: set[int] = set()
    try:
        with make_client(engine) as client:

            def order() -> bool:
                got = client.post("/graphql", json={"query": PLACE, "variables": {"input": place}})
                statuses.add(got.status_code)
                body = got.json()
                if got.status_code == 200 and "errors" not in body:
                    acknowledged.append(body["data"]["placeOrder"]["id"])
                    return True
                return False

            for _ in range(5):
                assert order()
            primary.stop("immediate")  # the primary dies
            standby.promote()
            started = time.monotonic()
            while not order():
                assert time.monotonic() - started < 30, statuses
                time.sleep(0.2)
            back = time.monotonic() - started
            for _ in range(3):
                assert order()
        assert statuses <= {200, 503}  # a failed write in between is a coded 503, never 500
        assert back < 30
        with psycopg.connect(standby.url("cdms")) as conn:
            ids = {str(r[0]) for r in conn.execute("SELECT id FROM app.orders").fetchall()}
        assert set(acknowledged) <= ids  # no acknowledged order lost
        assert len(acknowledged) == 9
    finally:
        close_store_of(url)
        dispose_engine(url)
