"""The BI login role (``cdms bi publish``, docs/bi.md) connects over the PostgreSQL protocol,
past every check of the API: what it may do is only what the database grants it. It reads
the ``bi`` views and nothing else, cannot write, cannot become another role."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import errors

from db.engine import make_engine
from semantic import bi
from semantic.validate import default_model
from tests.semantic.test_bi import as_role, role_for, unpublish


@pytest.fixture(scope="module")
def bi_conn(
    clone_database: Callable[[str], str],
) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    url = clone_database("bi_sec")
    role = role_for(url, "sec")
    with make_engine(url).begin() as conn:
        bi.publish(conn, default_model(), role, "pw")
    try:
        with psycopg.connect(as_role(url, role), autocommit=True) as conn:
            yield conn
    finally:
        unpublish(url, role)


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT email FROM app.customers",
        "SELECT * FROM app.api_keys",
        "SELECT * FROM dw.dim_customer",
        "SELECT * FROM ml.model_version",
        "SELECT * FROM dw_rollup.build",
        "SELECT * FROM public.alembic_version",
        "SELECT * FROM pg_authid",
        "SET ROLE cdms_api",
        "SET ROLE cdms_owner",
        "SET SESSION AUTHORIZATION postgres",
        "UPDATE bi.customers SET segment = 'corporate'",
        "DELETE FROM bi.sales",
        "DELETE FROM bi.customers",
        "INSERT INTO bi.products (product_id) VALUES (1)",
        "CREATE TABLE bi.mine (x int)",
        "CREATE TABLE public.mine (x int)",
        "CREATE VIEW bi.mine AS SELECT 1",
        "CREATE SCHEMA mine",
        "ALTER ROLE CURRENT_USER SUPERUSER",
        "SELECT app.place_order(1, '[]'::jsonb)",
        "COPY bi.sales TO PROGRAM 'true'",
        "SELECT pg_read_file('postgresql.conf')",
        # TEMP is PUBLIC's by default: a temp table fills the disk (404 MB in 1.2 s)
        "CREATE TEMP TABLE mine AS SELECT g FROM generate_series(1, 10) g",
        "CREATE FUNCTION pg_temp.mine() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "SET temp_file_limit = -1",
    ],
)
def test_the_bi_role_is_denied(
    bi_conn: psycopg.Connection[tuple[object, ...]], statement: str
) -> None:
    bi_conn.execute("SET default_transaction_read_only = off")  # its own default: no guard
    bi_conn.execute("RESET ROLE")
    with pytest.raises(
        (
            errors.InsufficientPrivilege,
            errors.ReadOnlySqlTransaction,
            errors.UndefinedTable,
            errors.UndefinedFunction,
            errors.ObjectNotInPrerequisiteState,  # a view of several tables: never writable
        )
    ):
        bi_conn.execute(statement)


def test_the_bi_role_reads_the_views(bi_conn: psycopg.Connection[tuple[object, ...]]) -> None:
    bi_conn.execute("RESET default_transaction_read_only")
    assert bi_conn.execute("SELECT count(*) FROM bi.sales").fetchone() == (0,)
    assert bi_conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
    with pytest.raises(errors.ReadOnlySqlTransaction):
        bi_conn.execute("CREATE TEMP TABLE t AS SELECT * FROM bi.sales")


def test_the_bi_role_cannot_pass_its_rights_on(
    bi_conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    bi_conn.execute("SET default_transaction_read_only = off")
    bi_conn.execute("GRANT SELECT ON bi.sales TO PUBLIC")  # a warning: no grant option
    got = bi_conn.execute(
        "SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a"
        " WHERE c.relnamespace = 'bi'::regnamespace AND a.grantee = 0"
    ).fetchone()
    assert got == (0,)


def test_the_bi_role_has_time_and_disk_limits(
    bi_conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    """An abandoned transaction ends (it would hold the views' locks: tests/semantic/
    test_bi_locks.py), and a query spills at most temp_file_limit to disk."""
    for name, value in [
        ("idle_in_transaction_session_timeout", "1min"),
        ("statement_timeout", "2min"),
        ("temp_file_limit", bi.TEMP_FILE_LIMIT),
    ]:
        if name != "temp_file_limit":  # a superuser's: the role may not even RESET it
            bi_conn.execute(f"RESET {name}")
        assert bi_conn.execute(f"SHOW {name}").fetchone() == (value,), name


def test_what_the_bi_role_does_to_itself_publish_undoes(
    clone_database: Callable[[str], str],
) -> None:
    """PostgreSQL lets any role change its own password and its own defaults; only the
    settings a superuser set (temp_file_limit) stay, and ``cdms bi publish`` restores the
    rest (and the password: not checked here, the test server trusts local logins).
    Privileges, not defaults, keep it read-only."""
    url = clone_database("bi_self")
    role = role_for(url, "self")
    with make_engine(url).begin() as conn:
        bi.publish(conn, default_model(), role, "pw")
    try:
        with psycopg.connect(as_role(url, role), autocommit=True) as conn:
            conn.execute("SET default_transaction_read_only = off")
            conn.execute(f"ALTER ROLE {role} RESET ALL")
            conn.execute(f"ALTER ROLE {role} PASSWORD 'other'")
        with make_engine(url).connect() as conn:
            config = conn.exec_driver_sql(
                f"SELECT rolconfig FROM pg_roles WHERE rolname = '{role}'"
            ).scalar()
        assert config == [f"temp_file_limit={bi.TEMP_FILE_LIMIT}"], config
        with make_engine(url).begin() as conn:
            bi.publish(conn, default_model(), role, "pw")
        with psycopg.connect(as_role(url, role), autocommit=True) as conn:
            assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
            assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone() == ("1min",)
            assert not conn.execute(
                "SELECT has_database_privilege(current_database(), 'TEMPORARY')"
            ).fetchone()[0]  # type: ignore[index]
    finally:
        unpublish(url, role)


def test_publish_leaves_cdms_its_temp_tables_and_names_logins_that_lose_them(
    clone_database: Callable[[str], str],
) -> None:
    """Taking TEMPORARY from PUBLIC took it from every login but the publisher's: one that
    runs cdms as another login lost the ETL's temp tables and the API's prediction log
    (its flushes counted as dropped), with no warning (the hostile review of 2026-12-07).
    cdms's roles keep it; another login is named."""
    url = clone_database("bi_temp")
    role = role_for(url, "temp")
    other = role_for(url, "other")
    with make_engine(url).begin() as conn:
        conn.exec_driver_sql(f"DROP ROLE IF EXISTS {other}")
        conn.exec_driver_sql(f"CREATE ROLE {other} LOGIN NOINHERIT IN ROLE cdms_api")
    try:
        with make_engine(url).begin() as conn:
            done = bi.publish(conn, default_model(), role, "pw")
        # (named among the first ten: the test cluster has many logins)
        lost = [w for w in done.warnings if "may no longer create temporary tables" in w]
        assert len(lost) == 1 and "GRANT TEMPORARY" in lost[0], done
        with psycopg.connect(as_role(url, other), autocommit=True) as conn:
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute("CREATE TEMP TABLE lost (a int)")
            conn.execute("SET ROLE cdms_api")  # as the API's requests run
            conn.execute("CREATE TEMP TABLE kept (a int)")
    finally:
        with make_engine(url).begin() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {other}")
            conn.exec_driver_sql(f"DROP ROLE IF EXISTS {other}")
        unpublish(url, role)


def _scram_matches(verifier: str, password: str) -> bool:
    """Whether a ``SCRAM-SHA-256$iterations:salt$StoredKey:ServerKey`` verifier is the
    password's (RFC 5802 and 7677; an ASCII password needs no SASLprep)."""
    head, keys = verifier.removeprefix("SCRAM-SHA-256$").split("$")
    iterations, salt = head.split(":")
    stored, server = (base64.b64decode(k) for k in keys.split(":"))
    salted = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(salt), int(iterations)
    )
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return (
        hashlib.sha256(client_key).digest() == stored
        and hmac.new(salted, b"Server Key", hashlib.sha256).digest() == server
    )


def test_publish_sends_a_scram_verifier_never_the_password(
    sa_conn: sa.Connection, database_url: str
) -> None:
    """Probe 13 (L1): ``CREATE/ALTER ROLE … PASSWORD 'plain'`` put the BI password in the
    server's log (``log_statement = ddl``) and in any statement statistics. The statement
    carries the SCRAM verifier computed by the client, which PostgreSQL stores as is."""
    role = role_for(database_url, "pwlog")
    sent: list[str] = []

    def seen(*args: Any) -> None:  # conn, cursor, statement, parameters, context, many
        sent.append(f"{args[2]} {args[3]!r}")

    sa.event.listen(sa_conn, "before_cursor_execute", seen)
    try:
        assert bi.ensure_role(sa_conn, role, "Sup3r'Secret-BI-p13") is True  # CREATE ROLE
        created = sa_conn.execute(
            sa.text("SELECT rolpassword FROM pg_authid WHERE rolname = :r"), {"r": role}
        ).scalar_one()
        assert bi.ensure_role(sa_conn, role, "An0ther-Secret-BI") is False  # ALTER ROLE
    finally:
        sa.event.remove(sa_conn, "before_cursor_execute", seen)
    assert any("PASSWORD 'SCRAM-SHA-256$" in s for s in sent), sent
    for secret in ("Sup3r", "An0ther"):
        assert not [s for s in sent if secret in s]
    altered = sa_conn.execute(
        sa.text("SELECT rolpassword FROM pg_authid WHERE rolname = :r"), {"r": role}
    ).scalar_one()
    assert created.startswith("SCRAM-SHA-256$") and altered.startswith("SCRAM-SHA-256$")
    assert _scram_matches(created, "Sup3r'Secret-BI-p13")
    assert _scram_matches(altered, "An0ther-Secret-BI")
    assert not _scram_matches(altered, "Sup3r'Secret-BI-p13")
    # (sa_conn's transaction is rolled back: the role is gone)
