"""The embedded PostgreSQL (``pgserver``) used when ``DATABASE_URL`` is unset.

The cluster lives in ``<CDMS_DATA_DIR>/pg`` and is reused on the next start. Several
processes may share it (``cdms serve`` and a ``cdms seed`` beside it): pgserver counts
the handles and the last process to exit stops the server.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import warnings
from importlib.util import find_spec
from pathlib import Path
from typing import Any
from urllib.parse import quote

from db.errors import DatabaseUnavailableError, DataDirError, MissingExtraError

_servers: dict[Path, Any] = {}


def importable(module: str) -> bool:
    """Whether ``module`` can be imported here (an optional dependency, api.extras)."""
    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: blocked (None in sys.modules)
        return False


def _import_pgserver() -> Any:
    if not importable("pgserver"):
        raise MissingExtraError(
            "DATABASE_URL is unset and the embedded PostgreSQL needs the 'embedded' extra"
            " (pgserver not installed; its wheels are for Python 3.11 and 3.12): set"
            " DATABASE_URL, or pip install 'cdms[embedded]'",
            extra="embedded",
        )
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); its fallback is fine.
        warnings.simplefilter("ignore")
        import pgserver

    return pgserver


def _check_writable(data_dir: Path) -> None:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        # a file of this process's own (two processes starting at once shared one name:
        # one removed the other's probe, which then read as "not writable")
        with tempfile.TemporaryFile(dir=data_dir):
            pass
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
        for name, value in MALLOC_ENV.items():  # for the postmaster pg_ctl starts below
            os.environ.setdefault(name, value)
        pgserver = _import_pgserver()
        import fasteners  # pgserver's own dependency (the embedded extra names it)

        # one process at a time starts, attaches and tunes: a first start's restart with
        # the settings must not happen while another process attaches (two commands
        # started at once on a new data folder: one of them failed to start)
        with fasteners.InterProcessLock(str(data_dir.resolve() / ".start.lock")):
            try:
                server = pgserver.get_server(pgdata, cleanup_mode="stop")
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                log = pgdata / "log"
                raise DatabaseUnavailableError(
                    f"the embedded PostgreSQL in {pgdata} did not start "
                    f"({type(exc).__name__}); see {log}"
                ) from None
            except PermissionError as exc:
                raise DataDirError(f"cannot use {pgdata}: {exc.strerror or exc}") from None
            _servers[pgdata] = server
            _tune(server, pgdata)
    uri: str = server.get_uri()
    return uri


# glibc's malloc hands memory back to the kernel as soon as 128 kB lie free at the top of
# the heap (and maps every block of 128 kB or more afresh), so a backend building a JSON
# answer of 100 kB or more faulted its pages in again on every statement: 500 orders with
# their predictions took 281 page faults and 2.0 ms, 1.6 ms without them; a page of 500
# orders alone 125 faults. With these the backends keep up to 16 MB of freed heap (blocks
# up to 8 MB come from the heap) and the same statements fault no page. Set in the
# environment of the postmaster cdms starts (its backends inherit them); an operator's own
# values win, and an external server takes them from its service's environment.
MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(8 * 2**20),
    "MALLOC_TRIM_THRESHOLD_": str(16 * 2**20),
}


def tuning(memory_bytes: int | None = None) -> dict[str, str]:
    """The settings cdms gives the embedded server (pgserver starts PostgreSQL's defaults):
    ``shared_buffers`` a quarter of the machine's memory between 128 MB and 2 GB (the
    default 128 MB made a 100,000-customer database read most pages from the OS cache),
    and room for the connection pools of several ``cdms serve`` workers."""
    memory = _memory_bytes() if memory_bytes is None else memory_bytes
    mb = 128 if memory is None else max(128, min(2048, memory // 4 // 2**20))
    return {"shared_buffers": f"{mb}MB", "max_connections": "200"}


def _memory_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None  # no sysconf (Windows): PostgreSQL's defaults


def _tune(server: Any, pgdata: Path) -> None:
    """Apply :func:`tuning` with ``ALTER SYSTEM``; both settings need a restart, done at
    once when no other process holds the server (its first start, a fresh clone, CI) and
    otherwise left to its next start."""
    wanted = tuning()
    current = _settings(server, wanted)
    changed = {k: v for k, v in wanted.items() if current.get(k) != v}
    if not changed:
        return
    for name, value in changed.items():
        server.psql(f"ALTER SYSTEM SET {name} = '{value}';")
    others = {p for p in server.global_process_id_list.get() if p != os.getpid() and _alive(p)}
    if others:
        server.psql("SELECT pg_reload_conf();")  # shows them as pending_restart
        return  # in use by another process: the settings apply from its next start
    from pgserver.utils import PostmasterInfo

    pg_ctl: Any = _import_pgserver()._commands.pg_ctl  # generated per binary at import
    try:
        pg_ctl(
            ["-w", "-l", str(pgdata / "log"), "restart"],
            pgdata=pgdata,
            user=server.system_user,
            timeout=60,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise DatabaseUnavailableError(
            f"the embedded PostgreSQL in {pgdata} did not restart with its settings "
            f"({type(exc).__name__}); see {pgdata / 'log'}"
        ) from None
    info = PostmasterInfo.read_from_pgdata(pgdata)  # the new postmaster's pid and socket
    if info is None or not info.is_running():
        raise DatabaseUnavailableError(f"the embedded PostgreSQL in {pgdata} did not come back")
    server._postmaster_info = info


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _settings(server: Any, names: dict[str, str]) -> dict[str, str]:
    """The values ``postgresql.auto.conf`` and the running server hold for ``names``."""
    quoted = ", ".join(f"'{n}'" for n in names)
    out = server.psql(
        f"SELECT name, setting, unit, pending_restart FROM pg_settings WHERE name IN ({quoted});"
    )
    found: dict[str, str] = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) != 4 or cells[0] not in names:
            continue
        name, setting, unit, pending = cells
        if pending == "t":
            continue  # already set, waiting for a restart
        if unit == "8kB":
            setting = f"{int(setting) * 8 // 1024}MB"
        found[name] = setting
    return found


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
        # pgserver forgets its handle only when it was the last one; a later start in this
        # process must attach anew (register its pid, read the current postmaster)
        type(server)._instances.pop(server.pgdata, None)


def running_pid(data_dir: Path) -> int | None:
    """PID of the embedded postmaster for ``data_dir``, if one is running."""
    pid_file = pgdata_dir(data_dir) / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def pg_bin(name: str) -> Path:
    """Path of a PostgreSQL client program shipped inside pgserver (pg_dump, psql...)."""
    pgserver = _import_pgserver()
    path = Path(pgserver.__file__).parent / "pginstall" / "bin" / name
    if not path.exists():
        raise DatabaseUnavailableError(f"{name} is not available in the pgserver package")
    return path
