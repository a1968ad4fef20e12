"""Report fixtures: one seeded, ETL-loaded warehouse per session (small: seconds)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy.engine import Engine

from db.engine import make_engine
from etl import runner
from tests.semantic.conftest import load_warehouse

SHOP = {"customers": 150, "orders": 1500, "seed": 3}


@pytest.fixture(scope="session")
def report_url(clone_database: Callable[[str], str]) -> Iterator[str]:
    url = clone_database("report")
    load_warehouse(url, SHOP["customers"], SHOP["orders"], SHOP["seed"])
    yield url
    runner.dispose(url)


@pytest.fixture(scope="session")
def report_engine(report_url: str) -> Engine:
    return make_engine(report_url)
