"""Throw-away PostgreSQL servers on loopback for the scale tests: a primary made with
``initdb`` (``wal_level=replica``) and streaming standbys made with ``pg_basebackup``,
each in its own folder under a temporary directory, stopped and removed afterwards.

The binaries: ``CDMS_PG_BIN`` if set, else Debian's PostgreSQL 15, else pgserver's.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

SMALL = {
    # frugal: the machine is shared; these servers hold a few rows
    "max_connections": "40",
    "shared_buffers": "16MB",
    "fsync": "off",
    "synchronous_commit": "on",
    "full_page_writes": "off",
    "wal_level": "replica",
    "max_wal_senders": "4",
    "hot_standby": "on",
    "listen_addresses": "'127.0.0.1'",
    "log_min_messages": "warning",
    "wal_receiver_status_interval": "1s",
}


def pg_bin_or_skip() -> Path:
    """PostgreSQL's binaries for the scale tests, or the test skipped with the reason."""
    bindir = pg_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL binaries with pg_basebackup (set CDMS_PG_BIN)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a postgres user to run PostgreSQL as")
    return bindir


def pg_bin() -> Path | None:
    for candidate in (os.environ.get("CDMS_PG_BIN"), "/usr/lib/postgresql/15/bin"):
        if candidate and (Path(candidate) / "pg_basebackup").is_file():
            return Path(candidate)
    try:
        import pgserver  # type: ignore[import-untyped]
    except ImportError:
        return None
    found = Path(pgserver.__file__).parent / "pginstall" / "bin"
    return found if (found / "pg_basebackup").is_file() else None


def as_owner(argv: list[str]) -> list[str]:
    """``argv`` run as the ``postgres`` user when we are root (PostgreSQL refuses root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


def own(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    bindir: Path
    datadir: Path
    port: int
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.datadir.parent / f"{self.datadir.name}.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def ctl(self, *args: str) -> None:
        subprocess.run(
            as_owner(
                [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.log), *args]
            ),
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        self.ctl("-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        if (self.datadir / "postmaster.pid").exists():
            subprocess.run(
                as_owner(
                    [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop"]
                ),
                capture_output=True,
            )

    def promote(self) -> None:
        self.ctl("-w", "promote")

    def configure(self, **settings: str) -> None:
        with (self.datadir / "postgresql.auto.conf").open("a") as f:  # owned by postgres
            for key, value in settings.items():
                f.write(f"{key} = {value}\n")

    def sql(self, text: str, database: str = "postgres") -> object:
        with psycopg.connect(self.url(database), autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(text)
            row = cur.fetchone() if cur.description else None
        return None if row is None else row[0]


@dataclass
class Cluster:
    """A primary and its standbys, all under ``root``."""

    bindir: Path
    root: Path
    servers: list[Server] = field(default_factory=list)

    def primary(self) -> Server:
        port = free_port()
        datadir = self.root / "primary"
        own(self.root)
        subprocess.run(
            as_owner([str(self.bindir / "initdb"), "-D", str(datadir), "-U", "postgres",
             "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"]),
            check=True, capture_output=True,
        )  # fmt: skip
        server = Server(self.bindir, datadir, port)
        server.configure(port=str(port), unix_socket_directories=f"'{self.root}'", **SMALL)
        with (datadir / "pg_hba.conf").open("a") as f:
            f.write("host replication all 127.0.0.1/32 trust\n")
        self.servers.append(server)
        server.start()
        return server

    def standby(self, of: Server, name: str, **settings: str) -> Server:
        port = free_port()
        datadir = self.root / name
        subprocess.run(
            as_owner([str(self.bindir / "pg_basebackup"), "-D", str(datadir), "-h", "127.0.0.1",
             "-p", str(of.port), "-U", "postgres", "-R", "-X", "stream", "-c", "fast"]),
            check=True, capture_output=True,
        )  # fmt: skip
        server = Server(self.bindir, datadir, port)
        server.configure(port=str(port), **settings)
        self.servers.append(server)
        server.start()
        return server

    def close(self) -> None:
        for server in reversed(self.servers):
            server.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def wait_for(predicate: object, timeout: float = 30.0, every: float = 0.1) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except psycopg.Error:
            pass
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")


@dataclass
class Bouncer:
    """PgBouncer in transaction mode in front of the server on port ``upstream``: its
    database ``database`` is the server's ``dbname`` (default the same name). With a
    ``password`` clients log in with it (scram-sha-256, as deploy/ha/pgbouncer.ini) and
    PgBouncer logs in to the server with it; without, trust."""

    upstream: int
    root: Path
    database: str = "cdms"
    dbname: str | None = None
    user: str = "postgres"
    password: str = ""
    pool_size: int = 2
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        self.root.mkdir(parents=True, exist_ok=True)
        own(self.root)
        users = self.root / "users.txt"
        users.write_text(f'"{self.user}" "{self.password}"\n')
        users.chmod(0o600)
        auth = "scram-sha-256" if self.password else "trust"
        ini = self.root / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"{self.database} = host=127.0.0.1 port={self.upstream}"
            f" dbname={self.dbname or self.database}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = {auth}\nauth_file = {users}\npool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\nmax_client_conn = 100\n"
            "server_reset_query =\nignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {self.root / 'pgbouncer.log'}\n"
        )
        for path in (users, ini):
            own(path)
        self.proc = subprocess.Popen(
            as_owner([exe, str(ini)]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(lambda: psycopg.connect(self.url(), connect_timeout=2).close() is None)

    def url(self) -> str:
        login = f"{self.user}:{self.password}" if self.password else self.user
        return f"postgresql://{login}@127.0.0.1:{self.port}/{self.database}"

    def stop(self) -> None:
        """PgBouncer and ``runuser`` before it: their process group."""
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc = None
