"""Engine factory: one SQLAlchemy engine per URL, on psycopg 3.

``database_url()`` resolves where the database is: ``DATABASE_URL`` if set, otherwise the
embedded server in ``CDMS_DATA_DIR`` (started on first use).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url

from db.config import DATA_DIR_NAME, DbSettings, has_cluster, to_libpq_url, to_sqlalchemy_url
from db.errors import (
    CdmsError,
    DatabaseUnavailableError,
    NoDatabaseError,
    busy_error,
    from_db_error,
)
from db.server import embedded_url

EMBEDDED_DATABASE = "cdms"


def database_url(settings: DbSettings | None = None, *, create: bool = True) -> str:
    """libpq URL of the application database (creating it on the embedded server if needed).

    ``create=False``: refuse with NoDatabaseError when the data folder holds no cluster yet,
    rather than start a new, empty one (a command run from the wrong folder)."""
    settings = settings or DbSettings.from_env()
    if settings.database_url:
        to_sqlalchemy_url(settings.database_url)  # validates the scheme
        return to_libpq_url(settings.database_url)
    if not create and not has_cluster(settings.data_dir):
        where = (
            "CDMS_DATA_DIR"
            if settings.data_dir_source == "CDMS_DATA_DIR"
            else f"no {DATA_DIR_NAME} folder with a database in {Path.cwd()} or its parents;"
            " looked for"
        )
        raise NoDatabaseError(
            f"no cdms database ({where} {settings.data_dir}): run `cdms serve` (or"
            " `cdms db upgrade`) in the project folder first, or set CDMS_DATA_DIR or"
            " DATABASE_URL",
            data_dir=str(settings.data_dir),
        )
    admin = embedded_url(settings.data_dir, "postgres")
    ensure_database(admin, EMBEDDED_DATABASE)
    return embedded_url(settings.data_dir, EMBEDDED_DATABASE)


_engines: dict[str, Engine] = {}


def make_engine(url: str) -> Engine:
    """The process's engine for ``url`` (created once; pool sized by ``CDMS_DB_POOL_SIZE``
    and ``CDMS_DB_MAX_OVERFLOW``)."""
    engine = _engines.get(url)
    if engine is None:
        engine = sa.create_engine(
            to_sqlalchemy_url(url), **_pool(), **_named(url), pool_pre_ping=True
        )
        _prepare(engine)
        _engines[url] = engine
    return engine


def _pool() -> dict[str, int]:
    settings = DbSettings.from_env()
    return {"pool_size": settings.pool_size, "max_overflow": settings.max_overflow}


def _named(url: str) -> dict[str, Any]:
    """Connections that tell ``pg_stat_activity`` which cdms process holds them
    (``application_name`` "cdms <command> (pid N)"), unless the URL names its own."""
    if "application_name" in make_url(to_sqlalchemy_url(url)).query:
        return {}
    argv = sys.argv[1:2] if os.path.basename(sys.argv[0]) == "cdms" else []
    name = " ".join(["cdms", *argv, f"(pid {os.getpid()})"])
    return {"connect_args": {"application_name": name[:63]}}


def _prepare(engine: Engine) -> None:
    """Give each new connection psycopg's ``prepare_threshold`` for ``CDMS_DB_PREPARE``
    (off: never a server-side prepared statement, for PgBouncer in transaction mode)."""
    threshold = DbSettings.from_env().prepare_threshold()

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.prepare_threshold = threshold


# siblings of make_engine's engines whose checkouts skip the pre-ping, by the same URL
_unpinged: dict[str, Engine] = {}
_unpinged_lock = threading.Lock()


def unpinged(engine: Engine) -> Engine:
    """A sibling of ``engine`` (same URL and pool size) whose checkouts skip the pre-ping
    round trip — for a caller that recovers from a dead connection itself (see
    schema/lane.py) — and whose connections are in autocommit: its one user sends each
    read as one pipeline, which PostgreSQL runs as one implicit transaction, without a
    BEGIN and a COMMIT. ``engine`` itself when it was not made by :func:`make_engine`.
    Disposed together with ``engine`` by :func:`dispose_engine`."""
    for url, made in list(_engines.items()):
        if made is engine:
            with _unpinged_lock:
                sibling = _unpinged.get(url)
                if sibling is None:
                    sibling = _unpinged[url] = sa.create_engine(
                        to_sqlalchemy_url(url), isolation_level="AUTOCOMMIT", **_pool(),
                        **_named(url),
                    )  # fmt: skip
                    _prepare(sibling)
            return sibling
    return engine


# (each setting as it was, read before it is set: the filter runs on the subquery's rows)
_SET_LOCAL = sa.text(
    "SELECT s.n, s.was FROM (SELECT t.n, t.v, current_setting(t.n) AS was"
    " FROM unnest(CAST(:names AS text[]), CAST(:values AS text[])) AS t(n, v) OFFSET 0) AS s"
    " WHERE set_config(s.n, s.v, true) IS NOT NULL"
)


def set_local(conn: Connection, settings: Mapping[str, str]) -> dict[str, str]:
    """Set ``settings`` for the rest of the transaction (one round trip, however many);
    returns their values before, to put back with another call."""
    rows = conn.execute(_SET_LOCAL, {"names": list(settings), "values": list(settings.values())})
    return {str(n): str(was) for n, was in rows}


def dispose_engine(url: str) -> None:
    """Close every pooled connection to ``url`` (before dropping or cloning it)."""
    for registry in (_engines, _unpinged):
        engine = registry.pop(url, None)
        if engine is not None:
            engine.dispose()


def get_engine(settings: DbSettings | None = None) -> Engine:
    return make_engine(database_url(settings))


def check_connection(url: str) -> None:
    """Raise DatabaseUnavailableError with a one-line reason if ``url`` cannot be reached."""
    import psycopg

    try:
        with psycopg.connect(to_libpq_url(url), connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        reason = text.removeprefix("connection failed: ")
        raise DatabaseUnavailableError(f"cannot connect to the database: {reason}") from None


def ensure_database(admin_url: str, name: str, template: str | None = None) -> None:
    """CREATE DATABASE ``name`` unless it exists (run against a maintenance database)."""
    import psycopg
    from psycopg import sql

    check_connection(admin_url)
    with psycopg.connect(to_libpq_url(admin_url), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            stmt = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        with suppress(psycopg.errors.DuplicateDatabase):
            conn.execute(stmt)


def drop_database(admin_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(to_libpq_url(admin_url), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database."""
    from sqlalchemy.engine import make_url

    u = make_url(to_sqlalchemy_url(url)).set(database=name)
    return to_libpq_url(u.render_as_string(hide_password=False))


def write_error(exc: sa.exc.DBAPIError) -> CdmsError | None:
    """The domain error a write transaction raises for a database error of one of its
    statements or of its COMMIT, or None if it is unexpected. A server that refuses to write
    (25006 read_only_sql_transaction) is one Patroni is still promoting, to which HAProxy
    already routes writes: a failover, which passes (503)."""
    if getattr(exc.orig, "sqlstate", None) == "25006":
        return DatabaseUnavailableError()
    return from_db_error(exc)


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction that commits on success and rolls back otherwise.

    Database errors that have a domain meaning are re-raised as CdmsError subclasses
    (:func:`write_error`).
    """
    try:
        with engine.begin() as conn:
            yield conn
    except sa.exc.DBAPIError as exc:
        mapped = write_error(exc)
        if mapped is not None:
            raise mapped from exc
        raise
    except sa.exc.OperationalError as exc:  # pragma: no cover - covered by DBAPIError
        raise DatabaseUnavailableError(str(exc)) from exc
    except sa.exc.TimeoutError:  # no pooled connection free in time (not a DBAPIError)
        raise busy_error() from None
