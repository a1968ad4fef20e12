"""The embedded server's Unix socket is reachable by its owner only. With a data folder whose
socket path is over 107 bytes, pgserver puts the socket in its runtime folder instead
(``$XDG_RUNTIME_DIR``, unset under cron, su, docker exec and CI: ``/tmp/runtime-<uid>``),
where it was a 0777 socket in 0755 folders with trust authentication: any local user was the
superuser, and ``COPY … TO PROGRAM`` ran commands as the cdms user (probe 13, M1)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from db.server import pg_bin, pgdata_dir, running_pid, tuning

ROOT = Path(__file__).resolve().parents[2]

HOLD = (
    "import sys\n"
    "from pathlib import Path\n"
    "from db.server import embedded_url, stop_embedded\n"
    "data = Path(sys.argv[1])\n"
    "try:\n"
    "    print(embedded_url(data), flush=True)\n"
    "    sys.stdin.read()\n"
    "finally:\n"
    "    stop_embedded(data)\n"
)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary folder with a short path (the runtime folder's socket path must fit)."""
    folder = Path(tempfile.mkdtemp(prefix="cdms-", dir="/tmp"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _env(tmp: Path) -> dict[str, str]:
    """No XDG_RUNTIME_DIR (as under cron or su), and a temporary folder of the test's own,
    so pgserver's runtime folder is ``<tmp>/runtime-<uid>/python_PostgresServer``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"XDG_RUNTIME_DIR", "DATABASE_URL"} and not k.startswith("CDMS_")
    }
    env["TMPDIR"] = str(tmp)
    return env


def _owners() -> set[int]:
    """Who may own the socket's folder: this user, and pgserver's own user when root."""
    owners = {os.geteuid()}
    if os.geteuid() == 0:
        with contextlib.suppress(KeyError):
            owners.add(pwd.getpwnam("pgserver").pw_uid)
    return owners


def test_tuning_makes_the_socket_its_owners_only() -> None:
    assert tuning(2**30)["unix_socket_permissions"] == "0700"


def test_a_long_data_path_puts_the_socket_where_only_its_owner_reaches_it(
    tmp_path: Path, short_tmp: Path
) -> None:
    data = tmp_path / ("d" * 100)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(data)], cwd=ROOT, env=_env(short_tmp),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        url = holder.stdout.readline().strip()
        assert url, holder.communicate(timeout=60)[1]
        folder = Path(parse_qs(url.split("?", 1)[1])["host"][0])
        runtime = short_tmp / f"runtime-{os.geteuid()}" / "python_PostgresServer"
        assert folder.parent == runtime, folder  # the long path moved the socket there
        info = folder.lstat()
        assert stat.S_ISDIR(info.st_mode) and info.st_uid in _owners(), info
        assert stat.S_IMODE(info.st_mode) == 0o700, oct(info.st_mode)
        # as root, pgserver's own user (which runs PostgreSQL) traverses it, and no more
        wanted = 0o711 if os.geteuid() == 0 else 0o700
        assert stat.S_IMODE(runtime.stat().st_mode) == wanted, oct(runtime.stat().st_mode)
        assert stat.S_IMODE(runtime.parent.stat().st_mode) & 0o044 == 0  # listed by no other
        socket = folder / ".s.PGSQL.5432"
        assert stat.S_ISSOCK(socket.lstat().st_mode)
        assert stat.S_IMODE(socket.lstat().st_mode) & 0o077 == 0, oct(socket.lstat().st_mode)
        if os.geteuid() == 0 and shutil.which("setpriv"):
            # another local user (daemon, uid 1) tries to connect: refused by the kernel
            other = subprocess.run(
                ["setpriv", "--reuid=1", "--regid=1", "--clear-groups", "env", "-i",
                 str(pg_bin("psql")), f"host={folder} user=postgres dbname=postgres",
                 "-X", "-A", "-t", "-c", "SELECT current_user"],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            assert other.returncode != 0, other.stdout
            assert "Permission denied" in other.stderr, other.stderr
    finally:
        _, err = holder.communicate(timeout=60)
    assert holder.returncode == 0, err


def _hold(data: Path, tmp: Path) -> subprocess.Popen[str]:
    """A process holding the embedded server of ``data`` (its URL on the first line)."""
    return subprocess.Popen(
        [sys.executable, "-c", HOLD, str(data)], cwd=ROOT, env=_env(tmp),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _stop_left_server(data: Path) -> None:
    """Stop the server of ``data`` if a test's failure left it running (as pgserver does)."""
    if running_pid(data) is None:
        return
    user = ["runuser", "-u", "pgserver", "--"] if os.geteuid() == 0 else []
    pg_ctl = [*user, str(pg_bin("pg_ctl"))]
    stop = [*pg_ctl, "-D", str(pgdata_dir(data)), "-m", "fast", "-w", "stop"]
    if subprocess.run(stop, capture_output=True, timeout=60).returncode != 0:
        pid = running_pid(data)  # (its folder out of reach: pytest made a parent 0700)
        if pid is not None:
            subprocess.run([*pg_ctl, "kill", "INT", str(pid)], capture_output=True, timeout=60)


@pytest.mark.skipif(os.geteuid() != 0, reason="pgserver opens the parent folders as root only")
def test_as_root_a_start_lets_no_one_list_or_read_the_private_folders_above(
    tmp_path: Path, short_tmp: Path
) -> None:
    """As root, pgserver runs PostgreSQL as its own user and, on every start, gave every
    folder above the cluster read and traverse for everyone: a 0700 /root became 0755, and
    a 0644 /root/app/.env (DATABASE_URL's password) readable by every local user (probe 15,
    M2). Its user needs to traverse them only (what that leaves: docs/security.md)."""
    private = tmp_path / "private"
    (private / "app").mkdir(parents=True)
    for folder in (private, private / "app"):
        folder.chmod(0o700)
    data = private / "app" / ".cdms"
    holder = _hold(data, short_tmp)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip(), holder.communicate(timeout=60)[1]
        for folder in (private, private / "app", data):
            mode = stat.S_IMODE(folder.stat().st_mode)
            assert mode & 0o044 == 0, f"{folder} {mode:04o}"  # no r for group and others
            assert mode & 0o001, f"{folder} {mode:04o}"  # x for others: pgserver's user
        if shutil.which("setpriv"):  # another local user lists nothing of it
            other = subprocess.run(
                ["setpriv", "--reuid=1", "--regid=1", "--clear-groups", "ls", str(private)],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            assert other.returncode != 0 and "Permission denied" in other.stderr, other
    finally:
        _, err = holder.communicate(timeout=60)
        _stop_left_server(data)
    assert holder.returncode == 0, err


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs PostgreSQL as another user")
def test_as_root_a_restart_with_pending_settings_reaches_its_socket_folder(
    tmp_path: Path, short_tmp: Path
) -> None:
    """A process attaching to a running server made the runtime folder 0700 root again,
    which pgserver's user cannot traverse: a restart for a pending setting then failed
    ("could not open lock file … Permission denied"; probe 15, L1)."""
    import psycopg

    data = tmp_path / ("d" * 100)  # the socket in the runtime folder
    holder = _hold(data, short_tmp)
    try:
        assert holder.stdout is not None
        url = holder.stdout.readline().strip()
        assert url, holder.communicate(timeout=60)[1]
        with psycopg.connect(url, autocommit=True) as conn:  # a setting waits for a restart
            conn.execute("ALTER SYSTEM RESET unix_socket_permissions")
            conn.execute("SELECT pg_reload_conf()")
        holder.kill()  # gone without letting go: the next process alone holds the server
        holder.wait(timeout=30)
        again = subprocess.run(
            [sys.executable, "-c", HOLD, str(data)], cwd=ROOT, env=_env(short_tmp),
            input="", capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert again.returncode == 0, again.stderr
        # restarted with its settings: the new socket is its owner's only again
        folder = Path(parse_qs(again.stdout.strip().split("?", 1)[1])["host"][0])
        socket = (folder / ".s.PGSQL.5432").lstat()
        assert stat.S_IMODE(socket.st_mode) & 0o077 == 0, oct(socket.st_mode)
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.communicate(timeout=60)
        _stop_left_server(data)
