"""The tests here place orders and create rows: they get a shop of their own (the same
small shop as tests/security, in another database), so the counts the other security
tests rely on stay exact."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.engine import make_engine
from tests.api.conftest import Shop, build_shop
from tests.security.conftest import Parties


@pytest.fixture(scope="session")
def sec_engine(clone_database: Callable[[str], str]) -> Engine:
    return make_engine(clone_database("secw"))


@pytest.fixture(scope="session")
def sec_shop(sec_engine: Engine) -> Shop:
    with sec_engine.begin() as conn:
        # the warehouse counts as published (empty): a never-loaded one makes cube fields
        # answer WAREHOUSE_LOADING (docs/operations.md), and these tests are about access
        conn.execute(sa.text("UPDATE dw.etl_state SET version = greatest(version, 1)"))
        return build_shop(conn)


@pytest.fixture(scope="session")
def parties(sec_shop: Shop) -> Parties:
    a, b = sec_shop.customers[1], sec_shop.customers[2]
    return Parties(a, b, sec_shop.orders[a], sec_shop.orders[b])
