"""The foundation's CLI contract: one-line failures with a stable code, the embedded server
started, reused and stopped, and one ``cdms serve`` per data folder."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from api.lock import ServeLock
from db.server import running_pid
from tests.cli import run_cdms


def one_line_error(proc: subprocess.CompletedProcess[str], code: str, exit_code: int) -> str:
    assert proc.returncode == exit_code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error[{code}]: "), lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    return lines[0]


def test_unreachable_database_url_is_one_line(cli_env: dict[str, str]) -> None:
    env = cli_env | {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nowhere"}
    line = one_line_error(run_cdms(env, "db", "upgrade"), "SERVICE_UNAVAILABLE", 1)
    assert "127.0.0.1" in line


def test_a_database_url_of_another_kind_is_refused(cli_env: dict[str, str]) -> None:
    env = cli_env | {"DATABASE_URL": "mysql://root@127.0.0.1/test"}
    assert "postgresql://" in one_line_error(run_cdms(env, "db", "upgrade"), "CONFIG", 1)


def test_a_malformed_database_url_is_a_config_error_that_shows_no_password(
    cli_env: dict[str, str],
) -> None:
    """libpq's parse errors quote the URL: the password was printed by every command (probe
    of 2026-12-07), as a DATABASE or SERVICE_UNAVAILABLE error an orchestrator retries."""
    for url in (
        "postgresql://u:S3cret%zzPW@127.0.0.1:5432/test",  # a bad percent escape
        "postgresql://u:S3cret%25PW@[::1:5432/test",  # an unclosed IPv6 bracket
        "postgresql://u:S3cretPW@127.0.0.1:99999/test",
        "postgresql://u:S3cretPW@127.0.0.1:5432/test?sslmode=bogus",
        "postgresql://u@[::1/d?password=S3cretQ",  # the password as a parameter
        "postgresql://u:S3cretPW@127.0.0.1/test?options=%ff",  # an escape that is not UTF-8
        "postgresql://u@[::1/d?pass%77ord=S3cretW",  # the parameter's name escaped
        "host=h password=S3cretK sslmode=bogus",  # libpq's keyword/value form
    ):
        line = one_line_error(run_cdms(cli_env | {"DATABASE_URL": url}, "db", "upgrade"),
                              "CONFIG", 1)  # fmt: skip
        assert line.startswith("error[CONFIG]: DATABASE_URL "), line
        assert "S3cret" not in line, line
        assert not line.endswith("\\n"), line  # libpq's line break, escaped (probe 15)


def test_a_setting_that_is_not_utf8_is_refused(cli_env: dict[str, str]) -> None:
    """A byte that is not UTF-8 in DATABASE_URL or a CDMS_* value (Python keeps it as a
    surrogate, which psycopg cannot encode) is error[CONFIG] naming it, not a traceback."""
    not_utf8 = "\udcff"  # the byte 0xff in the environment (os.fsencode)
    url = cli_env["DATABASE_URL"] + not_utf8
    line = one_line_error(run_cdms(cli_env | {"DATABASE_URL": url}, "ml", "list"), "CONFIG", 1)
    assert line.startswith("error[CONFIG]: DATABASE_URL is not UTF-8 text"), line
    env = cli_env | {"CDMS_BI_PASSWORD": f"pw{not_utf8}"}
    line = one_line_error(run_cdms(env, "bi", "publish"), "CONFIG", 1)
    assert line.startswith("error[CONFIG]: CDMS_BI_PASSWORD is not UTF-8 text"), line
    assert "pw" not in line  # a secret's value is not shown


def test_a_data_folder_that_cannot_be_written_is_refused(cli_env: dict[str, str]) -> None:
    env = {k: v for k, v in cli_env.items() if k != "DATABASE_URL"}
    env["CDMS_DATA_DIR"] = "/proc/cdms-cannot-live-here"
    line = one_line_error(run_cdms(env, "db", "upgrade"), "DATA_DIR", 1)
    assert "/proc/cdms-cannot-live-here" in line


def test_bad_options_and_commands_are_usage_errors(cli_env: dict[str, str]) -> None:
    one_line_error(run_cdms(cli_env, "db", "upgrade", "--no-such-option"), "USAGE", 2)
    one_line_error(run_cdms(cli_env, "no-such-command"), "USAGE", 2)
    one_line_error(run_cdms(cli_env, "serve", "--port", "http"), "USAGE", 2)


def test_the_embedded_server_starts_is_reused_and_stops(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["CDMS_DATA_DIR"] = str(tmp_path / "data")
    first = run_cdms(env, "db", "upgrade")
    assert first.returncode == 0, first.stderr
    assert "upgraded from empty" in first.stdout
    assert (tmp_path / "data" / "pg" / "PG_VERSION").exists()
    assert running_pid(tmp_path / "data") is None, "the last cdms process must stop the server"
    again = run_cdms(env, "db", "upgrade")
    assert again.returncode == 0, again.stderr
    assert "already at revision" in again.stdout  # the same cluster and database, reused
    assert running_pid(tmp_path / "data") is None


def test_a_second_serve_on_the_same_data_folder_fails_clearly(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    data = Path(cli_env["CDMS_DATA_DIR"])
    holder = ServeLock(data)
    holder.acquire("http://127.0.0.1:8123")
    try:
        line = one_line_error(run_cdms(cli_env, "serve", "--port", "8124"), "ALREADY_RUNNING", 1)
        assert f"pid {os.getpid()}" in line and "http://127.0.0.1:8123" in line
    finally:
        holder.release()


def test_ctrl_c_while_the_command_loads_is_one_line(cli_env: dict[str, str]) -> None:
    """Ctrl-C in the first half second, while ``cdms`` imports its commands (typer, pandas…),
    is ``error[ABORTED]`` and exit 130 as later, not a traceback. The installed script is
    that entry point."""
    import signal
    import sys
    import time
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    entry = pyproject["project"]["scripts"]["cdms"]
    module, _, function = entry.partition(":")
    for delay in (0.15, 0.25, 0.35, 0.45, 0.6, 0.8):  # (where imports happen moves)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"from {module} import {function}; {function}()",
                "etl",
                "--help",
            ],
            env=cli_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, (delay, err)
        if proc.returncode != 0:  # (0: it had finished before the signal)
            assert (proc.returncode, err.strip()) == (130, "error[ABORTED]: interrupted"), delay


def test_urls_libpq_takes_are_taken() -> None:
    """Several hosts, a host's port left out, a socket folder, IPv6: what check_url must not
    refuse (failover set-ups, the embedded server)."""
    from db.config import check_url

    for url in (
        "postgresql://u@a,b:5433/db",
        "postgresql://u@a:5432,b/db?target_session_attrs=read-write",
        "postgresql://postgres:@/postgres?host=%2Ftmp%2Fpg",
        "postgresql://u:p%40ss@[::1]:5432/db?sslmode=require",
    ):
        check_url(url)
