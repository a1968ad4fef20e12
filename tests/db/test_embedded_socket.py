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

from db.server import pg_bin, tuning

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
        if os.geteuid() != 0:  # (as root, pgserver opens the parents to its own user)
            assert stat.S_IMODE(runtime.stat().st_mode) == 0o700, oct(runtime.stat().st_mode)
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
