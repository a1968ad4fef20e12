"""The embedded PostgreSQL (``pgserver``) used when ``DATABASE_URL`` is unset.

The cluster lives in ``<CDMS_DATA_DIR>/pg`` and is reused on the next start. Several
processes may share it (``cdms serve`` and a ``cdms seed`` beside it): pgserver counts
the handles and the last process to exit stops the server.
"""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
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
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
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

        runtime = Path(pgserver.PostgresServer.runtime_path)
        _own_runtime_folder(runtime)

        # one process at a time starts, attaches and tunes: a first start's restart with
        # the settings must not happen while another process attaches (two commands
        # started at once on a new data folder: one of them failed to start)
        with fasteners.InterProcessLock(str(data_dir.resolve() / ".start.lock")):
            try:
                with _parents_traversable_only(pgdata, runtime):
                    server = pgserver.get_server(pgdata, cleanup_mode="stop")
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                log = pgdata / "log"
                raise DatabaseUnavailableError(
                    f"the embedded PostgreSQL in {pgdata} did not start "
                    f"({type(exc).__name__}); see {log}"
                ) from None
            except PermissionError as exc:
                raise DataDirError(f"cannot use {pgdata}: {exc.strerror or exc}") from None
            _seal_socket_folder(server, pgdata)
            _servers[pgdata] = server
            _tune(server, pgdata)
    uri: str = server.get_uri()
    return uri


# A data folder whose socket path (``<pgdata>/.s.PGSQL.5432``) is over 107 bytes gets its
# socket in pgserver's runtime folder, ``$XDG_RUNTIME_DIR/python_PostgresServer/<hash>``;
# with XDG_RUNTIME_DIR unset (cron, su, docker exec, CI) that is ``/tmp/runtime-<uid>/…``,
# which pgserver made 0755 with a 0777 socket and trust authentication: any local user was
# the superuser (and ran programs as the cdms user with COPY … TO PROGRAM). So the runtime
# folder is made the user's own (0700) before the start, the socket's folder after it, and
# the socket itself is 0700 (``unix_socket_permissions`` in :func:`tuning`). As root,
# pgserver runs PostgreSQL as its own user, which must traverse the runtime folder to its
# socket's folder (0700, its own): 0711 then (0700 cut a restart off from its lock file).
_RUNTIME_HINT = "set XDG_RUNTIME_DIR to a folder of yours with mode 0700"


def _runtime_mode() -> int:
    """The runtime folder's mode: its owner's alone, traversable by pgserver's user as root."""
    return 0o711 if os.geteuid() == 0 else 0o700


def _own_runtime_folder(runtime: Path) -> None:
    """pgserver's runtime folder (its lock file, and the socket of a data folder with a long
    path) and the folder above it: created 0700 when missing, refused (DataDirError) when a
    symbolic link, another user's or writable by others (something may have been put in
    it); the runtime folder itself is then made 0700 (0711 as root: :func:`_runtime_mode`)."""
    if os.name != "posix":
        return
    for path, tighten in ((runtime.parent, False), (runtime, True)):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise DataDirError(
                f"cannot make the embedded PostgreSQL's runtime folder {path}"
                f" ({exc.strerror or exc}); {_RUNTIME_HINT}"
            ) from None
        info = os.lstat(path)
        problem = _not_private(info, {os.geteuid()})
        if problem is not None:
            raise DataDirError(
                f"the embedded PostgreSQL's runtime folder {path} {problem}: remove it, or"
                f" {_RUNTIME_HINT}"
            )
        if tighten and stat.S_IMODE(info.st_mode) != _runtime_mode():
            os.chmod(path, _runtime_mode())  # pgserver (and cdms before) made it 0755


@contextmanager
def _parents_traversable_only(pgdata: Path, runtime: Path) -> Iterator[None]:
    """As root, pgserver runs PostgreSQL as its own user and, on every start, gives each
    folder above the cluster, above its programs and above the socket's folder read and
    traverse for everyone (g+rx,o+rx: its ``ensure_prefix_permissions``): a 0700 /root
    became 0755, and so readable by every local user a 0644 /root/app/.env holding
    DATABASE_URL's password (probe 15, M2). Its user needs to traverse them only: pgserver
    is given a version that adds g+x,o+x alone (PostgreSQL runs with root's group, whose
    bits are the ones that count in a folder of group root), and whatever else a start
    added to those folders is taken back after it (were pgserver's name to change). Left:
    a folder others may traverse, in which a file of a loose mode can be read by whoever
    knows its path."""
    if os.name != "posix" or os.geteuid() != 0:
        yield
        return
    import pgserver.postgres_server as started_by
    from pgserver._commands import POSTGRES_BIN_PATH

    folders = {*pgdata.parents, *Path(POSTGRES_BIN_PATH).resolve().parents}
    folders |= {runtime, *runtime.parents}
    before: dict[Path, int] = {}
    for folder in folders:
        with suppress(OSError):
            before[folder] = stat.S_IMODE(os.stat(folder).st_mode)
    name = "ensure_prefix_permissions"  # (imported into pgserver's module: not exported)
    theirs = getattr(started_by, name, None)
    if theirs is not None:
        setattr(started_by, name, _traversable)
    try:
        yield
    finally:
        if theirs is not None:
            setattr(started_by, name, theirs)
        for folder, mode in before.items():
            with suppress(OSError):
                now = stat.S_IMODE(os.stat(folder).st_mode)
                added = now & ~mode & ~_TRAVERSE
                if added:
                    os.chmod(folder, now & ~added)


_TRAVERSE = stat.S_IXGRP | stat.S_IXOTH


def _traversable(path: Path) -> None:
    """Each folder above ``path`` traversable (g+x,o+x), and nothing more."""
    for folder in path.parents:
        mode = stat.S_IMODE(os.stat(folder).st_mode)
        if mode & _TRAVERSE != _TRAVERSE:
            os.chmod(folder, mode | _TRAVERSE)


def _not_private(info: os.stat_result, owners: set[int], *, writable: bool = False) -> str | None:
    """Why a folder (its ``lstat``) is not ``owners``' own, or None; ``writable``: other
    users' write access allowed (pgserver's 0777 socket folder, made 0700 after)."""
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a folder"
    if info.st_uid not in owners:
        return f"is owned by uid {info.st_uid}, not by you (uid {os.geteuid()})"
    if mode & 0o022 and not writable:
        return f"is writable by other users (mode {mode:04o})"
    return None


def _seal_socket_folder(server: Any, pgdata: Path) -> None:
    """The folder of the server's socket, when it is not the cluster's own (0700) folder:
    made 0700 and its server's (pgserver's own user when root, which pgserver gave a 0777
    folder); another user's is refused (DataDirError)."""
    folder = server.get_postmaster_info().socket_dir
    if os.name != "posix" or folder is None or Path(folder) == pgdata:
        return
    me = os.geteuid()
    owner = me
    if server.system_user:
        import pwd

        owner = pwd.getpwnam(server.system_user).pw_uid
    info = os.lstat(folder)
    problem = _not_private(info, {me, owner}, writable=True)
    if problem is not None:
        raise DataDirError(
            f"the embedded PostgreSQL in {pgdata} listens in {folder}, which {problem}:"
            f" stop that server, or {_RUNTIME_HINT}"
        )
    if info.st_uid != owner:
        os.chown(folder, owner, -1)  # (root: the folder pgserver made for its own user)
    os.chmod(folder, 0o700)


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
    and room for the connection pools of several ``cdms serve`` workers; a Unix socket only
    its owner may connect to (with trust authentication, whoever reaches it is the
    superuser: see ``_own_runtime_folder``)."""
    memory = _memory_bytes() if memory_bytes is None else memory_bytes
    mb = 128 if memory is None else max(128, min(2048, memory // 4 // 2**20))
    return {
        "shared_buffers": f"{mb}MB",
        "max_connections": "200",
        "unix_socket_permissions": "0700",
    }


def _memory_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None  # no sysconf (Windows): PostgreSQL's defaults


def _tune(server: Any, pgdata: Path) -> None:
    """Apply :func:`tuning` with ``ALTER SYSTEM``; each setting needs a restart, done at
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
