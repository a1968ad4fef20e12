"""Semantic-layer fixtures: one seeded, ETL-loaded warehouse (with rollups) per session.

~300 customers and ~3,000 orders keep it to a few seconds; tests only read it. Tests that
change the warehouse make their own database (``fresh_warehouse``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import Engine

from db.config import to_libpq_url
from db.engine import make_engine
from db.seed import seed
from etl import pipeline, runner
from semantic.model import Granularity
from semantic.query import CubeQuery, DimensionField, MeasureField, Member
from semantic.service import CubeResult, execute

SHOP = {"customers": 300, "orders": 3000, "seed": 5}


def load_warehouse(url: str, customers: int, orders: int, seed_: int) -> None:
    """Seed ``url`` and run the pipeline once (the load, then the rollups)."""
    seed(url, customers, orders, seed_)
    pipeline.run(url)


@pytest.fixture(scope="session")
def warehouse_url(clone_database: Callable[[str], str]) -> Iterator[str]:
    url = clone_database("semantic")
    load_warehouse(url, SHOP["customers"], SHOP["orders"], SHOP["seed"])
    yield url
    runner.dispose(url)


@pytest.fixture(scope="session")
def wh(warehouse_url: str) -> Engine:
    return make_engine(warehouse_url)


def sql(url_or_engine: str | Engine, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Hand-written SQL (autocommit) for comparisons."""
    url = url_or_engine if isinstance(url_or_engine, str) else _url(url_or_engine)
    with psycopg.connect(to_libpq_url(url), autocommit=True) as conn:
        cur = conn.execute(query, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def run(engine: Engine, query: CubeQuery, **kw: Any) -> CubeResult:
    kw.setdefault("use_cache", False)
    with engine.connect() as conn:
        return execute(conn, query, **kw)


def m(ref: str, alias: str | None = None, **mods: Any) -> MeasureField:
    cube, name = ref.split(".")
    return MeasureField(alias or ref, Member(cube, name), **mods)


def d(ref: str, gran: str | None = None, alias: str | None = None) -> DimensionField:
    cube, name = ref.split(".")
    g = Granularity(gran) if gran else None
    return DimensionField(alias or (ref + (f".{gran}" if gran else "")), Member(cube, name), g)


def mem(ref: str) -> Member:
    cube, name = ref.split(".")
    return Member(cube, name)


def num(v: Any) -> float | None:
    return None if v is None else round(float(v), 6)
