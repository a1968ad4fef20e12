"""A shop on an engine of two pooled connections (no overflow, a short pool timeout): what
the admission and dropped-socket tests use to fill the pool with a few requests."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import NamedTuple

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.config import to_sqlalchemy_url
from db.engine import make_engine
from tests.api.conftest import Shop, build_shop

POOL_TIMEOUT_S = 12.0
_databases = itertools.count()


class SmallPool(NamedTuple):
    engine: Engine
    url: str
    shop: Shop


@pytest.fixture
def small(clone_database: Callable[[str], str]) -> Iterator[SmallPool]:
    url = clone_database(f"small{next(_databases)}")
    with make_engine(url).begin() as conn:
        shop = build_shop(conn)
    engine = sa.create_engine(
        to_sqlalchemy_url(url),
        pool_size=2,
        max_overflow=0,
        pool_timeout=POOL_TIMEOUT_S,
        pool_pre_ping=True,
    )
    yield SmallPool(engine, url, shop)
    engine.dispose()


def idle_in_transaction(url: str) -> int:
    """Sessions of ``url``'s database left idle inside a transaction (a leaked connection)."""
    with make_engine(url).connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        )
