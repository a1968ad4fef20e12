"""The first minutes with the CLI: usage without arguments, the data folder resolved once
(never a new empty cluster from another folder), a busy port refused before any work, a
quiet shutdown, and serving with none of the train/report/seed/embedded extras."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from db.config import resolve_data_dir
from tests.cli import run_cdms
from tests.db.test_cli_foundation import one_line_error
from tests.reliability._server import free_port, stop, wait_healthy

ROOT = Path(__file__).resolve().parents[2]


def _env_without_database(cli_env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in cli_env.items() if k not in {"DATABASE_URL", "CDMS_DATA_DIR"}}


def test_cdms_alone_prints_the_usage(cli_env: dict[str, str], tmp_path: Path) -> None:
    for args in ((), ("db",)):
        proc = run_cdms(cli_env, *args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "Usage: cdms" in proc.stdout and proc.stderr == ""


def test_a_command_from_a_folder_without_a_database_names_where_it_looked(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    env = _env_without_database(cli_env)
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    for args in (("etl", "run"), ("ml", "list"), ("apikey", "list"), ("seed",)):
        line = one_line_error(run_cdms(env, *args, cwd=elsewhere), "NO_DATABASE", 1)
        assert str(elsewhere / ".cdms") in line and "cdms serve" in line, line
    assert not (elsewhere / ".cdms").exists()  # no new, empty cluster
    env["CDMS_DATA_DIR"] = str(tmp_path / "empty")
    line = one_line_error(run_cdms(env, "etl", "run", cwd=elsewhere), "NO_DATABASE", 1)
    assert "CDMS_DATA_DIR" in line and str(tmp_path / "empty") in line
    assert not (tmp_path / "empty" / "pg").exists()


def test_the_data_folder_is_found_from_a_sub_folder_of_the_project(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / ".cdms" / "pg").mkdir(parents=True)
    (project / ".cdms" / "pg" / "PG_VERSION").write_text("16\n")
    deep = project / "docs" / "notes"
    deep.mkdir(parents=True)
    assert resolve_data_dir(None, deep) == (project / ".cdms", "found")
    assert resolve_data_dir(None, project) == (project / ".cdms", "found")
    # an empty .cdms on the way (a folder with no cluster) does not stop the search
    (project / "docs" / ".cdms").mkdir()
    assert resolve_data_dir(None, deep) == (project / ".cdms", "found")
    assert resolve_data_dir(None, tmp_path) == (tmp_path / ".cdms", "default")
    assert resolve_data_dir(str(tmp_path / "x"), deep) == (tmp_path / "x", "CDMS_DATA_DIR")


def test_a_busy_port_fails_at_once_with_one_line(cli_env: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_cdms(cli_env, "serve", "--port", str(port), timeout=60)
    line = one_line_error(proc, "PORT_IN_USE", 1)
    assert str(port) in line and "--port" in line
    assert proc.stdout == ""  # no start-up work: nothing migrated, seeded or loaded
    assert not (Path(cli_env["CDMS_DATA_DIR"]) / "serve.lock").exists()


def test_production_refuses_demo_open(cli_env: dict[str, str], tmp_path: Path) -> None:
    """Probe 13 (M4): no token was the admin of a production server, without a word. (The
    port is busy: had the settings passed, nothing would start either.)"""
    env = cli_env | {"CDMS_ENV": "production", "CDMS_DEMO_OPEN": "1", "CDMS_HOST": "0.0.0.0"}
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        proc = run_cdms(env, "serve", "--port", str(busy.getsockname()[1]), timeout=60)
    line = one_line_error(proc, "CONFIG", 1)
    assert "CDMS_DEMO_OPEN" in line and "CDMS_ENV=production" in line, line
    assert proc.stdout == ""  # nothing started
    assert not Path(cli_env["CDMS_DATA_DIR"]).exists()


@pytest.mark.parametrize(
    ("host", "demo_hosts", "said"),
    [
        ("0.0.0.0", "", "only from this machine"),
        ("::", "", "only from this machine"),
        ("0.0.0.0", "shop.lan", "anyone who reaches this server as shop.lan"),
        ("127.0.0.1", "", None),
        ("127.0.0.1", "shop.lan", None),
    ],
)
def test_demo_open_on_a_network_address_is_warned_about(
    cli_env: dict[str, str], host: str, demo_hosts: str, said: str | None
) -> None:
    """``cdms serve`` says who a demo-open server bound beyond loopback lets in (the port
    is busy, so nothing starts after the warning)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as busy:
        busy.bind((host, 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = cli_env | {"CDMS_DEMO_OPEN": "1", "CDMS_HOST": host, "CDMS_DEMO_HOSTS": demo_hosts}
        proc = run_cdms(env, "serve", "--port", str(port), timeout=60)
    one_line_error(proc, "PORT_IN_USE", 1)
    if said is None:
        assert proc.stdout == ""
        return
    warning = " ".join(proc.stdout.split())  # (rich may wrap it)
    assert warning.startswith("warning: CDMS_DEMO_OPEN=1") and said in warning, proc.stdout


# the last two are names that the IDNA codec cannot encode (an empty label, a label over 63
# characters): a UnicodeError from getaddrinfo, which was a traceback
@pytest.mark.parametrize(
    "host", ["999.1.1.1", "no-such-host.invalid", "192.0.2.1", "bad..host", "a" * 64 + ".example"]
)
def test_a_host_that_is_not_this_machine_is_a_config_error(
    cli_env: dict[str, str], host: str
) -> None:
    """The host is what is wrong, not the port (it said PORT_IN_USE)."""
    proc = run_cdms({**cli_env, "CDMS_HOST": host}, "serve", "--port", str(free_port()), timeout=60)
    line = one_line_error(proc, "CONFIG", 1)
    assert host in line and "CDMS_HOST" in line
    assert proc.stdout == ""


def _serve(
    env: dict[str, str], tmp_path: Path, *args: str, prelude: str = ""
) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    log = tmp_path / "serve.log"
    if prelude:  # run by every process of the server (the pipeline's child too)
        site = tmp_path / "prelude"
        site.mkdir()
        (site / "sitecustomize.py").write_text(prelude)
        paths = [str(site), *filter(None, [env.get("PYTHONPATH")])]
        env = env | {"PYTHONPATH": os.pathsep.join(paths)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from api.cli import main; main()",
                "serve",
                "--port",
                str(port),
                *args,
            ],
            env=env | {"CDMS_DEMO_OPEN": "1", "CDMS_ETL_MODE": "off"},
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, f"http://127.0.0.1:{port}", log


def test_a_clean_shutdown_of_the_embedded_server_prints_nothing_alarming(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    env = _env_without_database(cli_env) | {"CDMS_DATA_DIR": str(tmp_path / "data")}
    proc, base, log = _serve(env, tmp_path, "--no-seed-demo")
    try:
        wait_healthy(proc, base, timeout=120)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        stop(proc)
    out = log.read_text()
    assert "cdms serving on" in out and f"{base}/dashboard/" in out and f"{base}/graphql" in out
    assert f"data folder  {tmp_path / 'data'}" in out
    for alarming in ("lost its connection", "retrying", "Traceback", "ERROR", "WARNING"):
        assert alarming not in out, out


# a production image: none of the train/report/seed/embedded extras is installed
LEAN = """
import sys
for name in ("pandas", "sklearn", "skl2onnx", "matplotlib", "seaborn", "faker", "plotly",
             "scipy", "pgserver"):
    sys.modules[name] = None  # import fails, as if not installed
"""


def test_serving_needs_none_of_the_train_report_seed_or_embedded_extras(
    cli_env: dict[str, str], fresh_database: Callable[[], str], tmp_path: Path
) -> None:
    env = cli_env | {"DATABASE_URL": fresh_database()}
    proc, base, log = _serve(env, tmp_path, prelude=LEAN)
    try:
        wait_healthy(proc, base, timeout=120)
        r = httpx.post(
            f"{base}/graphql",
            json={"query": "{ cubeMeta { name } customers(first: 1) { totalCount } }"},
            timeout=30,
        )
        assert r.status_code == 200 and "errors" not in r.json(), r.text
        assert r.json()["data"]["customers"]["totalCount"] == 0
        page = httpx.get(f"{base}/graphql", headers={"Accept": "text/html"}, timeout=30)
        assert page.status_code == 200 and "graphiql" in page.text.lower()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        stop(proc)
    out = log.read_text()
    assert "demo data not seeded: the 'seed' extra is not installed" in out, out
    assert "models not trained: the 'train' extra is not installed" in out, out
    assert "Traceback" not in out
    for args, extra in ((("ml", "train"), "train"), (("report", "--out", "r"), "report")):
        code = f"{LEAN}\nfrom api.cli import main; main()"
        done = subprocess.run(
            [sys.executable, "-c", code, *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        line = one_line_error(done, "MISSING_EXTRA", 1)
        assert f"cdms[{extra}]" in line, line


def test_production_refuses_to_start_without_database_url(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    env = _env_without_database(cli_env) | {
        "CDMS_ENV": "production",
        "CDMS_DATA_DIR": str(tmp_path / "data"),
    }
    proc = run_cdms(env, "serve", "--port", str(free_port()), cwd=tmp_path)
    line = one_line_error(proc, "CONFIG", 1)
    assert "DATABASE_URL" in line and proc.stdout == ""
    assert not (tmp_path / "data").exists()  # no embedded cluster started
