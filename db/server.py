"""The embedded PostgreSQL (``pgserver``) used when ``DATABASE_URL`` is unset.

The cluster lives in ``<CDMS_DATA_DIR>/pg`` and is reused on the next start. Several
processes may share it (``cdms serve`` and a ``cdms seed`` beside it): pgserver counts
the handles and the last process to exit stops the server.
"""

from __future__ import annotations

import os
import subprocess
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

from db.errors import DatabaseUnavailableError, DataDirError

_servers: dict[Path, Any] = {}


def _import_pgserver() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); its fallback is fine.
        warnings.simplefilter("ignore")
        import pgserver

    return pgserver


def _check_writable(data_dir: Path) -> None:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise DataDirError(
            f"data folder {data_dir} is not writable ({exc.strerror or exc}); "
            "set CDMS_DATA_DIR to a folder you can write"
        ) from None


def pgdata_dir(data_dir: Path) -> Path:
    return data_dir.resolve() / "pg"


def start_embedded(data_dir: Path) -> str:
    """Start (or attach to) the embedded server; return a libpq URL for database ``postgres``."""
    _check_writable(data_dir)
    pgdata = pgdata_dir(data_dir)
    server = _servers.get(pgdata)
    if server is None:
        pgserver = _import_pgserver()
        try:
            server = pgserver.get_server(pgdata, cleanup_mode="stop")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            log = pgdata / "log"
            raise DatabaseUnavailableError(
                f"the embedded PostgreSQL in {pgdata} did not start ({type(exc).__name__}); "
                f"see {log}"
            ) from None
        except PermissionError as exc:
            raise DataDirError(f"cannot use {pgdata}: {exc.strerror or exc}") from None
        _servers[pgdata] = server
    uri: str = server.get_uri()
    return uri


def embedded_url(data_dir: Path, database: str = "postgres") -> str:
    """libpq URL of ``database`` on the embedded server (started if needed)."""
    base = start_embedded(data_dir)
    # pgserver's URI is postgresql://postgres:@/postgres?host=<socket dir>
    head, _, query = base.partition("?")
    root = head.rsplit("/", 1)[0]
    return f"{root}/{quote(database)}" + (f"?{query}" if query else "")


def stop_embedded(data_dir: Path) -> None:
    """Release this process's handle; the server stops when no other process holds one."""
    pgdata = pgdata_dir(data_dir)
    server = _servers.pop(pgdata, None)
    if server is not None:
        server.cleanup()


def running_pid(data_dir: Path) -> int | None:
    """PID of the embedded postmaster for ``data_dir``, if one is running."""
    pid_file = pgdata_dir(data_dir) / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def pg_bin(name: str) -> Path:
    """Path of a PostgreSQL client program shipped inside pgserver (pg_dump, psql...)."""
    pgserver = _import_pgserver()
    path = Path(pgserver.__file__).parent / "pginstall" / "bin" / name
    if not path.exists():
        raise DatabaseUnavailableError(f"{name} is not available in the pgserver package")
    return path
