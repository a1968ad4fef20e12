"""Running the ``cdms`` command as a subprocess from tests, the way a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def cli_environment(url: str, tmp_path: Path) -> dict[str, str]:
    """This process's environment without CDMS_* settings, pointed at ``url``, with a
    private data folder, a wide terminal (so rich does not wrap the one-line errors) and
    pools of 6 + 4 connections per engine: a server's default 16 + 8, twice (the pinged
    engine and the read lane's), with a pipeline process beside it, let two test servers
    under load on each of two workers pass the embedded server's 200 connections."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDMS_")}
    env["DATABASE_URL"] = url
    env["CDMS_DB_POOL_SIZE"] = "6"
    env["CDMS_DB_MAX_OVERFLOW"] = "4"
    env["CDMS_DATA_DIR"] = str(tmp_path / "data")
    env["COLUMNS"] = "200"
    return env


def run_cdms(
    env: dict[str, str], *args: str, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from api.cli import main; main()", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
