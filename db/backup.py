"""``pg_dump -Fc`` / ``pg_restore`` of the application database (embedded or configured).

The client programs are the ones shipped in pgserver (PostgreSQL 16), which dump a 15 or
16 server alike. A restore goes into an empty database (no schema app/dw/ml, no
``alembic_version``); into one that holds data only with ``force``, in which case every
object of the dump is dropped and recreated in the restore's single transaction.

No secret is put on a command line (which every local user reads in ``ps``): the URL's
password travels in ``PGPASSWORD`` (``/proc/<pid>/environ`` is the owner's only), and the
programs get libpq's connection variables (TLS, GSSAPI, pass and service files) as the
app's own connections do. A backup is written to a new private file (0600, ``O_EXCL``)
beside ``FILE`` and renamed onto it once complete; ``FILE`` is a new name or a regular
file (a symbolic link, a device such as /dev/stdout, a fifo would be replaced, not written
through: refused). A failure, Ctrl-C, SIGTERM or SIGHUP stops pg_dump and removes the
file in the making (probe 15).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import IO

from db.config import to_libpq_url, to_sqlalchemy_url
from db.errors import BadUserInputError, CdmsError, ConfigError, ConflictError, Terminated
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


# libpq's environment variables that say where and how to connect (the app's own
# connections honour them too, so pg_dump reaches the same server the same way): the URL's
# explicit host, port, user and database win over PGHOST & co. Every other PG* variable is
# dropped: PGCLIENTENCODING would change the dump's encoding, PGDATESTYLE / PGTZ / PGGEQO
# the session, PG_COLOR the error lines read below.
_LIBPQ_ENV = frozenset(
    {
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGDATABASE",
        "PGUSER",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGSYSCONFDIR",
        "PGOPTIONS",
        "PGAPPNAME",
        "PGCONNECT_TIMEOUT",
        "PGTARGETSESSIONATTRS",
        "PGLOADBALANCEHOSTS",
        "PGREQUIRESSL",
        "PGREQUIREPEER",
        "PGREQUIREAUTH",
        "PGCHANNELBINDING",
        "PGKRBSRVNAME",
        "PGMINPROTOCOLVERSION",
        "PGMAXPROTOCOLVERSION",
    }
)
_LIBPQ_ENV_PREFIXES = ("PGSSL", "PGGSS")  # PGSSLMODE, PGSSLROOTCERT, ..., PGGSSENCMODE, ...


def _connection(url: str) -> tuple[str, dict[str, str]]:
    """libpq's keyword/value string for ``url`` without its password, and the environment
    that carries the password."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(to_libpq_url(to_sqlalchemy_url(url)))  # (checked: ConfigError)
    if params.get("sslpassword"):
        raise ConfigError(
            "DATABASE_URL holds sslpassword, which pg_dump and pg_restore could only be given"
            " on their command line (seen by every local user): give the client key without"
            " a passphrase, or back up with a URL that does not hold it"
        )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PG") or k in _LIBPQ_ENV or k.startswith(_LIBPQ_ENV_PREFIXES)
    }
    if "password" in params:  # (given, even empty, it overrides PGPASSWORD for the app too)
        password = str(params.pop("password") or "")
        env.pop("PGPASSWORD", None)
        if password:
            env["PGPASSWORD"] = password
    return make_conninfo("", **params), env


def _run(
    args: list[str],
    env: dict[str, str],
    on_line: Callable[[str], None],
    stdout: IO[bytes] | int = subprocess.DEVNULL,
) -> None:
    errors: list[str] = []
    with subprocess.Popen(
        args, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True
    ) as proc:  # (closes the pipe, also when on_line raises)
        assert proc.stderr is not None
        try:
            for line in proc.stderr:
                line = line.rstrip()
                if ": error:" in line or "FATAL" in line:
                    errors.append(line)
                on_line(line)
        except BaseException:  # (an interrupt, a signal, on_line: the program stops too)
            _stop(proc)
            raise
    if proc.returncode != 0:
        first = errors[0] if errors else f"{Path(args[0]).name} exited with {proc.returncode}"
        raise BackupError(first.split(": error: ", 1)[-1])


def _stop(proc: subprocess.Popen[str]) -> None:
    """End ``proc`` (SIGTERM, then SIGKILL after :data:`STOP_WAIT_S`), and reap it."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# how long pg_dump or pg_restore is given to end on SIGTERM before SIGKILL
STOP_WAIT_S = 5.0
# the signals that end a process with no clean-up unless handled (SIGINT already raises
# KeyboardInterrupt): a service manager's stop, a CI job's cancel, a closed terminal
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@contextmanager
def _stop_signals_raise() -> Iterator[None]:
    """While in the block, SIGTERM and SIGHUP raise :class:`Terminated` (the first of them:
    a second one does not cut the clean-up short), as SIGINT raises ``KeyboardInterrupt``;
    then the handlers before are back. A signal already ignored (``nohup``) or handled by
    someone else stays so; outside the main thread nothing changes (Python runs handlers
    there only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal fired
        if not fired:
            fired = True
            raise Terminated(signum)

    previous = {
        s: signal.signal(s, stop) for s in _STOP_SIGNALS if signal.getsignal(s) == signal.SIG_DFL
    }
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _check_target(file: Path) -> None:
    """``file`` is a new name or a regular file: anything else (a folder, a symbolic link,
    a device such as /dev/stdout, a fifo) would be replaced by the rename, not written
    through, so it is refused before anything runs."""
    try:
        mode = file.lstat().st_mode
    except OSError:  # nothing there (or no way to look: writing in its folder fails then)
        return
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        kind = "a directory"
    elif stat.S_ISLNK(mode):
        kind = "a symbolic link"
    else:
        kind = "a device, fifo or socket"
    raise BadUserInputError(
        f"{file} is not a regular file ({kind}): a backup replaces a regular file or"
        " takes a new name",
        field="file",
    )


def _count(url: str, sql: str) -> int:
    import psycopg

    with psycopg.connect(to_libpq_url(url)) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


def backup(url: str, file: Path, progress: ProgressFn | None = None) -> int:
    """Dump the database to ``file`` (custom format, mode 0600); returns its size in bytes.

    pg_dump writes to its standard output, a new file made with ``O_EXCL`` (``mkstemp``)
    in ``file``'s folder, which is renamed onto ``file`` once complete and flushed: no
    name of a file in the making for another user to plant, nothing followed through a
    symlink, and a failed dump leaves ``file`` as it was and no file behind (SIGTERM and
    SIGHUP too, while it runs: :class:`Terminated`). ``file`` is a new name or a regular
    file: a symbolic link, a device or a fifo is refused (BAD_USER_INPUT)."""
    _check_target(file)
    dsn, env = _connection(url)
    tables = _count(
        url,
        "SELECT count(*) FROM pg_tables WHERE schemaname IN ('app', 'dw', 'ml', 'public')",
    )
    done = 0

    def on_line(line: str) -> None:
        nonlocal done
        if "dumping contents of table" in line:
            done += 1
            if progress:
                progress("dump", min(done, tables), tables)

    if progress:
        progress("dump", 0, tables)
    args = [str(pg_bin("pg_dump")), "--format=custom", "--verbose", "--enable-row-security", dsn]
    with _stop_signals_raise():
        _write_whole(file, args, env, on_line)
    _fsync_folder(file.parent)
    if progress:
        progress("dump", tables, tables)
    return file.stat().st_size


def _write_whole(
    file: Path, args: list[str], env: dict[str, str], on_line: Callable[[str], None]
) -> None:
    """``args``' standard output into a new private file beside ``file``, renamed onto it
    once complete and flushed; on any failure, the new file removed."""
    folder = file.parent
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=f".{file.name}.", suffix=".partial")
    except OSError as exc:
        raise BackupError(f"cannot write in {folder}: {exc.strerror}") from None
    partial = Path(name)
    try:  # (any failure, an interrupt or a signal: the temporary file goes, ``file`` stays)
        with os.fdopen(fd, "wb") as out:
            _run(args, env, on_line, stdout=out)
            os.fsync(out.fileno())
        try:
            partial.replace(file)  # a failed dump never leaves a file that looks complete
        except OSError as exc:
            raise BackupError(f"cannot write {file}: {exc.strerror}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _fsync_folder(folder: Path) -> None:
    """The rename survives a crash once its folder is flushed."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
    dsn, env = _connection(url)
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
