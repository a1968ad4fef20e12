"""`cdms serve` listens before the heavy work: on a database with operational rows and no
warehouse, nested reads answer at once, the cube answers WAREHOUSE_LOADING until the
background load is done, /healthz stays 200 while /readyz is 503; with training off (as in
production) a server without models says so; a restart that finds everything current does
no load and no training."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from db.config import to_libpq_url
from etl.pipeline import PIPELINE
from etl.runner import LOCK_KEYS
from etl.steps import STEPS
from tests.cli import cli_environment
from tests.etl.conftest import one
from tests.reliability._server import free_port, stop, wait_healthy

NESTED = """{ customers(first: 3) { totalCount edges { node { id orders(first: 2) {
  totalCount edges { node { id items { quantity } } } } } } } }"""
CUBE = "{ cube { orders { count } } }"
PREDICT = "{ orders(first: 1) { edges { node { id predictedStatus { label } } } } }"


def _post(base: str, query: str) -> dict[str, Any]:
    resp = httpx.post(f"{base}/graphql", json={"query": query}, timeout=10)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


class Server:
    def __init__(self, url: str, tmp_path: Path, name: str, **extra: str) -> None:
        env = cli_environment(url, tmp_path)
        env.update(CDMS_DEMO_OPEN="1", CDMS_RATE_LIMIT="0", **extra)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from api.cli import main; main()", "serve",
             "--no-seed-demo", "--port", str(self.port)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def wait_listening(self, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, self.log()
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return time.monotonic() - self.started
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        stop(self.proc)
        self._log.close()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for s in started:
        s.stop()


def test_serve_listens_first_and_loads_in_the_background(
    shop: str, tmp_path: Path, servers: list[Server]
) -> None:
    # hold the ETL lock: the background load waits for it, as it would for a long load
    blocker = psycopg.connect(to_libpq_url(shop), autocommit=True)
    try:
        blocker.execute("SELECT pg_advisory_lock(%s, %s)", LOCK_KEYS)
        server = Server(shop, tmp_path, "first", CDMS_TRAIN_ON_START="0")
        servers.append(server)
        listening = server.wait_listening()
        assert listening < 30, listening

        # nested reads and mutations never wait for analytics
        t = time.monotonic()
        body = _post(server.base, NESTED)
        assert "errors" not in body, body
        assert body["data"]["customers"]["totalCount"] > 0
        assert time.monotonic() - t < 5

        cube = _post(server.base, CUBE)
        (error,) = cube["errors"]
        ext = error["extensions"]
        assert ext["code"] == "WAREHOUSE_LOADING", cube
        # every load step and publish (the step that makes the warehouse loaded)
        assert ext["steps"] == len(STEPS) + 1 and ext["steps"] <= len(PIPELINE)
        assert PIPELINE[ext["steps"] - 1].name == "publish"
        assert "estimateSeconds" in ext and ext["orders"] is not None

        ready = httpx.get(f"{server.base}/readyz", timeout=5)
        assert ready.status_code == 503 and ready.headers["retry-after"]
        detail = ready.json()
        assert detail["ready"] is False and detail["api"]["ready"] is True
        assert detail["warehouse"]["ready"] is False and detail["warehouse"]["loading"] is True
        assert httpx.get(f"{server.base}/healthz", timeout=5).status_code == 200  # alive
    finally:
        blocker.close()  # the load goes ahead

    wait_healthy(server.proc, server.base, timeout=120)
    body = _post(server.base, CUBE)
    assert "errors" not in body, body
    orders = one(shop, "SELECT count(*) FROM app.orders")
    assert body["data"]["cube"][0]["orders"]["count"] == orders

    # training is off (the production default): no model, said in /readyz and per field
    detail = httpx.get(f"{server.base}/readyz", timeout=5).json()
    assert detail["ready"] is True
    assert detail["models"] and not any(m["ready"] for m in detail["models"].values())
    predicted = _post(server.base, PREDICT)
    codes = {e["extensions"]["code"] for e in predicted["errors"]}
    assert codes == {"MODEL_UNAVAILABLE"}, predicted
    assert predicted["errors"][0]["extensions"]["model"]
    # the start-up work tells of the models after the whole load (features and scoring
    # too), which may still run once the warehouse is ready (published)
    deadline = time.monotonic() + 60
    while "training is a job" not in (log := server.log()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "warehouse: loading in the background" in log and "training is a job" in log, log
    assert log.index("cdms serving on") < log.index("warehouse: loaded"), log
    server.stop()
    servers.remove(server)

    # a restart that finds everything current: no run, no training, ready at once
    runs = one(shop, "SELECT count(*) FROM dw.etl_run")
    again = Server(shop, tmp_path, "second", CDMS_TRAIN_ON_START="0")
    servers.append(again)
    wait_healthy(again.proc, again.base, timeout=60, ready=False)  # listening
    # ready the moment it listens (how soon: bench/startup.py, not a test)
    assert httpx.get(f"{again.base}/readyz", timeout=5).status_code == 200
    # the pipeline's process reports what it found (a spawned interpreter: seconds on a
    # busy machine)
    deadline = time.monotonic() + 60
    while "warehouse: current" not in again.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    log = again.log()
    assert "warehouse: current" in log, log
    assert one(shop, "SELECT count(*) FROM dw.etl_run") == runs
    assert "warehouse: loading" not in log and "models: training" not in log, log


def test_production_does_not_train_on_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from api.settings import Settings

    monkeypatch.setenv("CDMS_ENV", "production")
    monkeypatch.delenv("CDMS_TRAIN_ON_START", raising=False)
    assert Settings.from_env().train_on_start is False
    monkeypatch.setenv("CDMS_ENV", "development")
    assert Settings.from_env().train_on_start is True
    monkeypatch.setenv("CDMS_ENV", "production")
    monkeypatch.setenv("CDMS_TRAIN_ON_START", "1")  # a demo image that trains on start
    assert Settings.from_env().train_on_start is True
