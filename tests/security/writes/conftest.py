"""The tests here place orders and create rows: they get a shop of their own (the same
small shop as tests/security, in another database), so the counts the other security
tests rely on stay exact."""

from __future__ import annotations

from collections.abc import Callable

import pytest
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
        return build_shop(conn)


@pytest.fixture(scope="session")
def parties(sec_shop: Shop) -> Parties:
    a, b = sec_shop.customers[1], sec_shop.customers[2]
    return Parties(a, b, sec_shop.orders[a], sec_shop.orders[b])
