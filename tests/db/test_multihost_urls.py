"""``DATABASE_URL`` listing several servers (libpq's failover form) survives the round
trips through SQLAlchemy's URL and back to libpq's."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from db.config import to_libpq_url, to_sqlalchemy_url
from db.engine import with_database

URLS = [
    "postgresql://cdms:p%40ss@db1:5432,db2:5433/cdms?target_session_attrs=read-write",
    "postgresql://cdms@db1,db2/cdms?port=5432,5433&target_session_attrs=read-write",
    "postgresql://cdms@/cdms?host=db1,db2&port=5432,5433&target_session_attrs=read-write",
]


@pytest.mark.parametrize("url", URLS)
def test_several_hosts_reach_psycopg_as_libpq_lists(url: str) -> None:
    engine = sa.create_engine(to_sqlalchemy_url(url))
    args = engine.dialect.create_connect_args(engine.url)[1]
    assert (args["host"], args["port"]) == ("db1,db2", "5432,5433")
    assert args["target_session_attrs"] == "read-write"
    engine.dispose()


@pytest.mark.parametrize("url", URLS)
def test_several_hosts_round_trip(url: str) -> None:
    back = to_libpq_url(to_sqlalchemy_url(url))
    assert make_url(to_sqlalchemy_url(back)) == make_url(to_sqlalchemy_url(url))
    other = with_database(url, "other")
    assert "/other" in other and "target_session_attrs=read-write" in other
    assert to_libpq_url(to_sqlalchemy_url(URLS[0])) == URLS[0]


def test_one_host_is_unchanged() -> None:
    url = "postgresql://postgres@127.0.0.1:5432/test"
    assert to_libpq_url(to_sqlalchemy_url(url)) == url
