"""``pg_dump -Fc`` / ``pg_restore`` of the application database (embedded or configured).

The client programs are the ones shipped in pgserver (PostgreSQL 16), which dump a 15 or
16 server alike. A restore goes into an empty database (no schema app/dw/ml, no
``alembic_version``); into one that holds data only with ``force``, in which case every
object of the dump is dropped and recreated in the restore's single transaction.

Passwords travel in ``PGPASSWORD``, never on a command line.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import make_url

from db.config import to_libpq_url, to_sqlalchemy_url
from db.errors import BadUserInputError, CdmsError, ConflictError
from db.server import pg_bin

ProgressFn = Callable[[str, int, int], None]

# the roles of docs/security.md are cluster-wide: a restore on another server must create
# them before the dump's GRANTs and policies name them
_ROLE_SQL = """
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['cdms_owner', 'cdms_api', 'cdms_customer'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN NOSUPERUSER NOINHERIT NOBYPASSRLS', r);
        END IF;
        IF NOT pg_has_role(current_user, r, 'MEMBER') THEN
            EXECUTE format('GRANT %I TO %I', r, current_user);
        END IF;
    END LOOP;
END
$$;
"""


class BackupError(CdmsError):
    code = "BACKUP_FAILED"


def _connection(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URL without its password, and the environment that carries it."""
    u = make_url(to_sqlalchemy_url(url))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if u.password:
        env["PGPASSWORD"] = str(u.password)
        u = u.set(password=None)
    return to_libpq_url(u.render_as_string(hide_password=False)), env


def _run(args: list[str], env: dict[str, str], on_line: Callable[[str], None]) -> None:
    errors: list[str] = []
    with subprocess.Popen(
        args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    ) as proc:  # (closes the pipe, also when on_line raises)
        assert proc.stderr is not None
        for line in proc.stderr:
            line = line.rstrip()
            if ": error:" in line or "FATAL" in line:
                errors.append(line)
            on_line(line)
    if proc.returncode != 0:
        first = errors[0] if errors else f"{Path(args[0]).name} exited with {proc.returncode}"
        raise BackupError(first.split(": error: ", 1)[-1])


def _count(url: str, sql: str) -> int:
    import psycopg

    with psycopg.connect(to_libpq_url(url)) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


def backup(url: str, file: Path, progress: ProgressFn | None = None) -> int:
    """Dump the database to ``file`` (custom format); returns its size in bytes."""
    if file.exists() and file.is_dir():
        raise BadUserInputError(f"{file} is a directory", field="file")
    tables = _count(
        url,
        "SELECT count(*) FROM pg_tables WHERE schemaname IN ('app', 'dw', 'ml', 'public')",
    )
    dsn, env = _connection(url)
    done = 0
    if progress:
        progress("dump", 0, tables)

    def on_line(line: str) -> None:
        nonlocal done
        if "dumping contents of table" in line:
            done += 1
            if progress:
                progress("dump", min(done, tables), tables)

    partial = file.with_name(file.name + ".partial")
    try:
        _run(
            [
                str(pg_bin("pg_dump")),
                "--format=custom",
                "--verbose",
                "--enable-row-security",
                f"--file={partial}",
                dsn,
            ],
            env,
            on_line,
        )
        partial.replace(file)  # a failed dump never leaves a file that looks complete
    finally:
        partial.unlink(missing_ok=True)
    if progress:
        progress("dump", tables, tables)
    return file.stat().st_size


def is_empty(url: str) -> bool:
    return (
        _count(
            url,
            "SELECT count(*) FROM pg_namespace WHERE nspname IN ('app', 'dw', 'ml')",
        )
        == 0
        and _count(url, "SELECT count(*) FROM pg_tables WHERE tablename = 'alembic_version'") == 0
    )


def restore(
    url: str, file: Path, *, force: bool = False, progress: ProgressFn | None = None
) -> int:
    """Restore ``file`` into the database, in one transaction; returns the items restored."""
    if not file.is_file():
        raise BadUserInputError(f"{file} does not exist or is not a file", field="file")
    listing = subprocess.run(
        [str(pg_bin("pg_restore")), "--list", str(file)],
        capture_output=True,
        text=True,
        check=False,
    )
    if listing.returncode != 0:
        raise BadUserInputError(
            f"{file} is not a cdms backup (pg_restore cannot read it)", field="file"
        )
    items = sum(1 for line in listing.stdout.splitlines() if line and not line.startswith(";"))
    if not force and not is_empty(url):
        raise ConflictError(
            "the database is not empty: restore into an empty database, or pass --force "
            "to replace what the backup holds",
            entity="database",
            reason="not_empty",
        )
    import psycopg

    with psycopg.connect(to_libpq_url(url), autocommit=True) as conn:
        conn.execute(_ROLE_SQL.encode())
    dsn, env = _connection(url)
    done = 0
    if progress:
        progress("restore", 0, items)

    def on_line(line: str) -> None:
        nonlocal done
        if line.startswith("pg_restore: creating") or line.startswith(
            "pg_restore: processing data"
        ):
            done += 1
            if progress:
                progress("restore", min(done, items), items)

    args = [
        str(pg_bin("pg_restore")),
        "--verbose",
        "--single-transaction",
        "--exit-on-error",
        "--no-owner",
        "--enable-row-security",
        f"--dbname={dsn}",
    ]
    if force:
        args += ["--clean", "--if-exists"]
    _run([*args, str(file)], env, on_line)
    if progress:
        progress("restore", items, items)
    return items
