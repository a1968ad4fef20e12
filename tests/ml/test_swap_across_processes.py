"""A model version activated once serves from every ``cdms serve`` process: activation
NOTIFYs ``cdms_model_activated`` and each process's model store LISTENs and swaps, so two
processes on one database (as on two hosts) answer with the new version without a
restart."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from db.engine import dispose_engine, make_engine
from ml.registry import activate, register
from ml.serving import close_store_of
from ml.train import TrainedModel
from tests.reliability._server import free_port, stop, wait_healthy
from tests.scale.cluster import wait_for

pytestmark = pytest.mark.scale  # starts API processes of its own

QUERY = """query ($i: ChurnRiskInput!) { predictChurnRisk(input: $i) { model { version } } }"""
INPUT = {"segment": "consumer", "country": "Germany", "tenureDays": 700.0, "ordersTotal": 12,
         "recencyDays": 5.0, "orders90d": 3, "orders365d": 10, "revenue365d": 4000.0,
         "meanGapDays": 40.0, "lastGapDays": 30.0}  # fmt: skip


@pytest.fixture
def registry_url(
    clone_database: Callable[[str], str], trained: dict[str, TrainedModel]
) -> Iterator[str]:
    """A database of its own with churn_risk v1 (active) and v2 (registered, inactive)."""
    url = clone_database("swap_processes")
    engine = make_engine(url)
    assert register(engine, trained["churn_risk"]).version == 1
    assert register(engine, trained["churn_risk"]).version == 2  # equal: activated...
    activate(engine, "churn_risk", 1)  # ...and back to v1 before the servers start
    try:
        yield url
    finally:
        close_store_of(url)
        dispose_engine(url)


@pytest.fixture
def two_servers(registry_url: str, tmp_path: Path) -> Iterator[list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDMS_", "DATABASE_URL"))}
    env.update(DATABASE_URL=registry_url, CDMS_ETL_MODE="off", CDMS_TRAIN_ON_START="0",
               CDMS_DEMO_OPEN="1", CDMS_DB_POOL_SIZE="2")  # fmt: skip
    cdms = str(Path(sys.executable).parent / "cdms")
    procs: list[subprocess.Popen[bytes]] = []
    bases = []
    try:
        for i in range(2):
            port = free_port()
            own = {**env, "CDMS_DATA_DIR": str(tmp_path / f"data{i}")}  # as on two hosts
            with (tmp_path / f"serve{i}.log").open("wb") as log:
                argv = [cdms, "serve", "--port", str(port), "--no-seed-demo"]
                procs.append(subprocess.Popen(argv, env=own, stdout=log, stderr=subprocess.STDOUT))
            bases.append(f"http://127.0.0.1:{port}")
        for proc, base in zip(procs, bases, strict=True):
            wait_healthy(proc, base, timeout=120, ready=False)  # no warehouse here
        yield bases
    finally:
        for proc in procs:
            stop(proc)


def _served_version(base: str) -> int:
    got = httpx.post(f"{base}/graphql", json={"query": QUERY, "variables": {"i": INPUT}})
    body = got.json()
    assert got.status_code == 200 and "errors" not in body, body
    return int(body["data"]["predictChurnRisk"]["model"]["version"])


def test_a_version_activated_once_serves_from_both_processes(
    two_servers: list[str], registry_url: str
) -> None:
    assert [_served_version(base) for base in two_servers] == [1, 1]
    # as `cdms ml activate churn_risk 2` does, from a third process
    activate(make_engine(registry_url), "churn_risk", 2)
    for base in two_servers:
        wait_for(lambda base=base: _served_version(base) == 2, timeout=10)  # type: ignore[misc]
    activate(make_engine(registry_url), "churn_risk", 1)  # and a rollback reaches both too
    for base in two_servers:
        wait_for(lambda base=base: _served_version(base) == 1, timeout=10)  # type: ignore[misc]
