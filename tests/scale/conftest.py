"""A throw-away primary (migrated, with a small shop) and a standby that applies WAL ten
seconds late (``recovery_min_apply_delay``), on loopback ports of their own: the shared
server is not a replication primary, and a delayed standby is what read-your-writes needs
to be shown on."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from db.engine import dispose_engine, make_engine
from db.migrate import upgrade
from tests.api.conftest import Shop, build_shop
from tests.scale.cluster import Cluster, Server, pg_bin_or_skip, wait_for

DELAY_S = 10  # wide: the tests read "before" it on a machine that may be busy


@dataclass
class Replicated:
    primary: Server
    standby: Server
    url: str  # the primary's cdms database
    read_url: str  # the standby's
    engine: Engine
    shop: Shop


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    bindir = pg_bin_or_skip()
    root = Path(tempfile.mkdtemp(prefix="cdms-scale-"))
    made = Cluster(bindir, root)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(scope="session")
def replicated(cluster: Cluster) -> Iterator[Replicated]:
    primary = cluster.primary()
    primary.sql("CREATE DATABASE cdms")
    url = primary.url("cdms")
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        shop = build_shop(conn)
    from etl import pipeline, runner

    pipeline.run(url)  # a loaded warehouse: the cube answers (not WAREHOUSE_LOADING)
    runner.dispose(url)
    standby = cluster.standby(
        primary, "standby", recovery_min_apply_delay=f"'{DELAY_S}s'", hot_standby="on"
    )
    read_url = standby.url("cdms")
    wait_for(lambda: standby.sql("SELECT count(*) FROM app.orders", "cdms"), timeout=60)
    try:
        yield Replicated(primary, standby, url, read_url, engine, shop)
    finally:
        from ml.serving import close_store_of

        for u in (url, read_url):
            close_store_of(u)
            dispose_engine(u)
