"""The embedded server's settings (db.server.tuning) and the engines' pool (CDMS_DB_POOL_SIZE,
CDMS_DB_MAX_OVERFLOW): applied on a fresh cluster's first start, deferred while another
process holds the server, and bad values refused with a clear error."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from db import engine as db_engine
from db.config import DbSettings
from db.errors import ConfigError
from db.server import embedded_url, running_pid, stop_embedded, tuning

ROOT = Path(__file__).resolve().parents[2]


def _show(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT name, setting, pending_restart::text FROM pg_settings"
            " WHERE name IN ('shared_buffers', 'max_connections')"
        ).fetchall()
    return {name: f"{setting}{'*' if pending == 'true' else ''}" for name, setting, pending in rows}


def _mb(pages: str) -> str:
    return f"{int(pages.rstrip('*')) * 8 // 1024}MB"


def test_tuning_is_a_quarter_of_memory_between_128_mb_and_2_gb() -> None:
    assert tuning(256 * 2**20)["shared_buffers"] == "128MB"
    assert tuning(4 * 2**30)["shared_buffers"] == "1024MB"
    assert tuning(64 * 2**30)["shared_buffers"] == "2048MB"
    assert tuning(64 * 2**30)["max_connections"] == "200"


def test_a_fresh_cluster_starts_with_the_tuned_settings(tmp_path: Path) -> None:
    data = tmp_path / "data"
    try:
        shown = _show(embedded_url(data))
    finally:
        stop_embedded(data)
    wanted = tuning()
    assert _mb(shown["shared_buffers"]) == wanted["shared_buffers"], shown
    assert shown["max_connections"] == wanted["max_connections"], shown
    assert running_pid(data) is None


def test_settings_wait_for_the_next_start_while_another_process_holds_the_server(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    # a cluster at PostgreSQL's defaults, as an older cdms left it ...
    url = embedded_url(data)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM RESET ALL")
    stop_embedded(data)
    # ... started and held by a process that does not tune it (pgserver itself)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, pgserver;"
         " pgserver.get_server(sys.argv[1], cleanup_mode='stop');"
         " print('up', flush=True); sys.stdin.read()", str(data.resolve() / "pg")],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "up"
        pid = running_pid(data)
        url = embedded_url(data)
        assert running_pid(data) == pid, "the server restarted under another process"
        shown = _show(url)
        assert shown["max_connections"] == "100*", shown  # set, pending the next start
    finally:
        stop_embedded(data)
        holder.communicate(timeout=30)  # end of input: it exits, releasing its handle
    deadline = time.monotonic() + 30
    while running_pid(data) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        shown = _show(embedded_url(data))  # started again: the settings now hold
    finally:
        stop_embedded(data)
    assert shown["max_connections"] == tuning()["max_connections"], shown


def test_engines_use_the_configured_pool(
    monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    monkeypatch.setenv("CDMS_DB_POOL_SIZE", "3")
    monkeypatch.setenv("CDMS_DB_MAX_OVERFLOW", "1")
    url = database_url + ("&" if "?" in database_url else "?") + "application_name=pooltest"
    try:
        engine = db_engine.make_engine(url)
        sibling = db_engine.unpinged(engine)
        for e in (engine, sibling):
            assert e.pool.size() == 3  # type: ignore[attr-defined]
            assert e.pool._max_overflow == 1  # type: ignore[attr-defined]
    finally:
        db_engine.dispose_engine(url)


def _minor_faults(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[7])  # minflt, the 10th field of proc(5), counted after "(comm)"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_embedded_backends_keep_freed_memory_between_statements(tmp_path: Path) -> None:
    """glibc's defaults gave a backend's freed heap back to the kernel after every
    statement with a large answer, and faulted it in again on the next (a 500-order page
    with predictions: 281 page faults per statement); with MALLOC_ENV the heap stays."""
    data = tmp_path / "data"
    big = (
        "SELECT (SELECT json_agg(json_build_object('i', g, 'pad', repeat('x', 100)))"
        " FROM generate_series(1, 3000) AS g)::text"
    )  # a JSON answer of ~400 kB
    try:
        with psycopg.connect(embedded_url(data), autocommit=True) as conn:
            pid = conn.info.backend_pid
            for _ in range(3):  # the heap reaches its size
                conn.execute(big).fetchone()
            before = _minor_faults(pid)
            for _ in range(20):
                assert len(conn.execute(big).fetchone()[0]) > 300_000  # type: ignore[index]
            faults = _minor_faults(pid) - before
    finally:
        stop_embedded(data)
    assert faults < 100, f"{faults} page faults in 20 statements"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CDMS_DB_POOL_SIZE", "0", "CDMS_DB_POOL_SIZE must be at least 1, got 0"),
        ("CDMS_DB_POOL_SIZE", "many", "CDMS_DB_POOL_SIZE must be an integer, got 'many'"),
        ("CDMS_DB_MAX_OVERFLOW", "-1", "CDMS_DB_MAX_OVERFLOW must be at least 0, got -1"),
    ],
)
def test_bad_pool_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        DbSettings.from_env()
    assert str(info.value) == message
    assert os.environ[name] == value


def test_processes_starting_a_fresh_cluster_at_once_all_get_it_tuned(tmp_path: Path) -> None:
    """Two ``cdms`` commands started at the same moment on a new data folder: the first
    start's tuning restart must not pull the server from under the other (it did: the one
    that restarted saw no other holder yet, the other attached meanwhile, and a start
    failed with ``did not restart with its settings``)."""
    data = tmp_path / "data"
    go = tmp_path / "go"
    script = (
        "import sys, time, pathlib, psycopg\n"
        "from db.server import embedded_url, stop_embedded\n"
        "data, go = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])\n"
        "while not go.exists(): time.sleep(0.001)\n"
        "try:\n"
        "    with psycopg.connect(embedded_url(data)) as conn:\n"
        "        print(conn.execute('SHOW max_connections').fetchone()[0], flush=True)\n"
        "    sys.stdin.read()\n"
        "finally:\n"
        "    stop_embedded(data)\n"
    )
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    argv = [sys.executable, "-c", script, str(data), str(go)]
    procs = [subprocess.Popen(argv, cwd=ROOT, text=True, **pipes) for _ in range(3)]
    go.touch()
    try:
        shown = []
        for p in procs:
            assert p.stdout is not None
            shown.append(p.stdout.readline().strip())
    finally:
        outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outs]
    assert shown == [tuning()["max_connections"]] * 3, (shown, [err for _, err in outs])
    deadline = time.monotonic() + 30
    while running_pid(data) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert running_pid(data) is None, "the last holder did not stop the server"
