"""cdms behind PgBouncer 1.18 in transaction mode: with ``CDMS_DB_PREPARE=off`` no
server-side prepared statement is made, so reads, cube queries and orders work however
PgBouncer hands out its server connections; with preparation on, two clients sharing one
server connection collide on psycopg's statement names (why the setting exists)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from db.engine import dispose_engine, make_engine
from ml.serving import close_store_of
from tests.api.conftest import make_client
from tests.scale.cluster import Bouncer, Cluster
from tests.scale.conftest import Replicated

pytestmark = [
    pytest.mark.scale,
    pytest.mark.skipif(
        shutil.which("pgbouncer") is None and not Path("/usr/sbin/pgbouncer").exists(),
        reason="pgbouncer is not installed (apt-get install pgbouncer; .ci/run does)",
    ),
]

READ = """query ($id: ID!) { order(id: $id) { id items { lineNo product { sku } } } }"""
PLACE = """mutation ($input: PlaceOrderInput!) { placeOrder(input: $input) { id } }"""


@pytest.fixture
def bouncer(cluster: Cluster, replicated: Replicated) -> Iterator[Bouncer]:
    made = Bouncer(replicated.primary.port, cluster.root / "pgbouncer", pool_size=2)
    made.start()
    try:
        yield made
    finally:
        close_store_of(made.url())
        dispose_engine(made.url())
        made.stop()


def test_prepare_off_works_in_transaction_mode(
    bouncer: Bouncer, replicated: Replicated, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDMS_DB_PREPARE", "off")
    monkeypatch.setenv("CDMS_DB_POOL_SIZE", "6")
    engine = make_engine(bouncer.url())
    shop = replicated.shop
    oids = [str(o) for ids in shop.orders.values() for o in ids]
    item = [{"productId": str(shop.products[1]), "quantity": 1}]
    place = {"customerId": str(shop.customers[3]), "channel": "WEB", "paymentMethod": "CARD",
             "items": item}  # fmt: skip
    with make_client(engine) as client:

        def read(i: int) -> None:
            got = client.post(
                "/graphql", json={"query": READ, "variables": {"id": oids[i % len(oids)]}}
            )
            assert got.status_code == 200 and "errors" not in got.json(), got.text

        def order(_: int) -> None:
            got = client.post("/graphql", json={"query": PLACE, "variables": {"input": place}})
            assert got.status_code == 200 and "errors" not in got.json(), got.text

        def cube(_: int) -> None:
            got = client.post("/graphql", json={"query": "{ cube { sales { lineCount } } }"})
            assert got.status_code == 200 and "errors" not in got.json(), got.text

        # 6 client connections over PgBouncer's 2 server connections, each statement run
        # far more than psycopg's default threshold of 5
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(read, range(120)))
            list(pool.map(order, range(12)))
            list(pool.map(cube, range(12)))


def test_prepared_statements_collide_in_transaction_mode(bouncer: Bouncer) -> None:
    """Two clients on PgBouncer's one server connection: the second prepares psycopg's
    first statement name again on the same server session."""
    bouncer.stop()
    one = Bouncer(bouncer.upstream, bouncer.root.parent / "pgbouncer1", pool_size=1)
    one.start()
    try:
        with (
            psycopg.connect(one.url(), prepare_threshold=0, autocommit=True) as a,
            psycopg.connect(one.url(), prepare_threshold=0, autocommit=True) as b,
        ):
            a.execute("SELECT 1")
            with pytest.raises(psycopg.errors.DuplicatePreparedStatement):
                b.execute("SELECT 1")
    finally:
        one.stop()
