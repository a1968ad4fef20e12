"""Test fixtures: a real PostgreSQL, one throw-away database per test session.

With ``DATABASE_URL`` set, databases are created on that server; unset, on the embedded
server in ``CDMS_DATA_DIR`` (default ``./.cdms``). A migrated *template* database is built
once; the session database and any per-test ``fresh_database`` are cheap copies of it
(``CREATE DATABASE ... TEMPLATE``). Everything created here is dropped at the end.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.config import DbSettings, to_libpq_url
from db.engine import dispose_engine, drop_database, ensure_database, make_engine, with_database
from db.migrate import upgrade
from db.server import embedded_url
from tests.cli import cli_environment

_RUN_ID = f"cdms_t{os.getpid()}_{secrets.token_hex(3)}"


def _dispose(url: str) -> None:
    from ml.serving import close_store_of

    close_store_of(url)  # its LISTEN thread would keep reconnecting to a dropped database
    dispose_engine(url)


@pytest.fixture(autouse=True, scope="module")
def _idle_connections_closed() -> Iterator[None]:
    """After each test file, every engine of this process closes its idle pooled
    connections (they open again when next used). The engines of the files' databases
    are kept until the session drops those databases, and each kept up to its pool's 16
    idle connections: in CI's embedded stage the two workers held 55 and 33 by 80 % of
    the run, and with the test servers beside them passed the embedded server's 200."""
    yield
    from db import engine as engines

    for made in [*engines._engines.values(), *engines._unpinged.values()]:
        made.dispose()  # (a new pool: connections in use go back to none)


@pytest.fixture(scope="session")
def admin_url() -> str:
    """URL of a maintenance database on the server the tests use."""
    settings = DbSettings.from_env()
    if settings.database_url:
        return to_libpq_url(settings.database_url)
    return embedded_url(settings.data_dir, "postgres")


@pytest.fixture(scope="session")
def template_url(admin_url: str) -> Iterator[str]:
    name = f"{_RUN_ID}_tpl"
    ensure_database(admin_url, name)
    url = with_database(admin_url, name)
    try:
        upgrade(url)
        _dispose(url)
        yield url
    finally:
        _dispose(url)
        drop_database(admin_url, name)


@pytest.fixture(scope="session")
def clone_database(admin_url: str, template_url: str) -> Iterator[Callable[[str], str]]:
    """Factory: a new migrated database named after ``suffix``; dropped at session end."""
    created: list[str] = []
    template = template_url.rsplit("/", 1)[1].split("?", 1)[0]

    def make(suffix: str) -> str:
        name = f"{_RUN_ID}_{suffix}"
        ensure_database(admin_url, name, template=template)
        created.append(name)
        return with_database(admin_url, name)

    yield make
    for name in created:
        _dispose(with_database(admin_url, name))
        drop_database(admin_url, name)


@pytest.fixture(scope="session")
def database_url(clone_database: Callable[[str], str]) -> str:
    """The session's shared database (migrated, empty). Tests add their own rows."""
    return clone_database("main")


@pytest.fixture(scope="session")
def engine(database_url: str) -> Engine:
    return make_engine(database_url)


@pytest.fixture
def fresh_database(clone_database: Callable[[str], str]) -> Callable[[], str]:
    """Factory for a private migrated database, for tests that need the whole of one."""
    counter = iter(range(1_000_000))

    def make() -> str:
        return clone_database(f"f{secrets.token_hex(3)}{next(counter)}")

    return make


@pytest.fixture
def pg(database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A plain psycopg connection (autocommit off) to the session database."""
    with psycopg.connect(to_libpq_url(database_url)) as conn:
        yield conn
        conn.rollback()


@pytest.fixture
def sa_conn(engine: Engine) -> Iterator[sa.Connection]:
    """A SQLAlchemy connection inside a transaction that is rolled back afterwards."""
    with engine.connect() as conn:
        trans = conn.begin()
        yield conn
        trans.rollback()


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for running ``cdms`` as a subprocess against the session database."""
    return cli_environment(database_url, tmp_path)
