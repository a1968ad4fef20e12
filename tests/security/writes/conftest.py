"""The tests here place orders and create rows: they get a shop of their own (the same
small shop as tests/security, in another database), so the counts the other security
tests rely on stay exact."""

from __future__ import annotations

from tests.security.conftest import shop_fixtures

sec_engine, sec_shop, parties = shop_fixtures("secw")
