"""Two ``cdms serve`` processes on different ports and one database behave as one: what
one must know of the other lives in PostgreSQL (api keys and their revocation, the rate
limit's token buckets), so a key revoked through one is refused by both within the key
cache's window (CDMS_APIKEY_CACHE_SECONDS), and one rate limit holds across both."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.apikeys import create_key, revoke_key
from tests.reliability._server import free_port, stop, wait_healthy
from tests.scale.conftest import Replicated

pytestmark = pytest.mark.scale

CACHE_S = 1.0
QUERY = "{ __typename }"


@pytest.fixture
def two_servers(replicated: Replicated, tmp_path: Path) -> Iterator[list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDMS_", "DATABASE_URL"))}
    env.update(
        DATABASE_URL=replicated.url,
        CDMS_ETL_MODE="off",
        CDMS_RATE_LIMIT="1,8",  # 8 at once, then one a second, for the whole deployment
        CDMS_APIKEY_CACHE_SECONDS=str(CACHE_S),
        CDMS_DB_POOL_SIZE="2",
        CDMS_DB_MAX_OVERFLOW="2",
    )
    cdms = str(Path(sys.executable).parent / "cdms")
    procs: list[subprocess.Popen[bytes]] = []
    bases = []
    try:
        for i in range(2):
            port = free_port()
            # each its own data folder, as on two hosts (`cdms serve` locks its folder)
            own = {**env, "CDMS_DATA_DIR": str(tmp_path / f"data{i}")}
            with (tmp_path / f"serve{i}.log").open("wb") as log:
                argv = [cdms, "serve", "--port", str(port), "--no-seed-demo"]
                procs.append(subprocess.Popen(argv, env=own, stdout=log, stderr=subprocess.STDOUT))
            bases.append(f"http://127.0.0.1:{port}")
        for proc, base in zip(procs, bases, strict=True):
            wait_healthy(proc, base, timeout=120)
        yield bases
    finally:
        for proc in procs:
            stop(proc)


def _ask(base: str, key: str) -> int:
    got = httpx.post(
        f"{base}/graphql", json={"query": QUERY}, headers={"Authorization": f"Bearer {key}"}
    )
    return got.status_code


def test_two_processes_share_revocations_and_the_rate_limit(
    two_servers: list[str], replicated: Replicated
) -> None:
    one, two = two_servers
    found, key = create_key(replicated.engine, "analyst", name="two processes")
    other, other_key = create_key(replicated.engine, "analyst", name="rate limited")

    # one bucket for the key across both processes: 8 at once, then 1/s
    started = time.monotonic()
    statuses = [_ask(one if i % 2 else two, other_key) for i in range(20)]
    elapsed = time.monotonic() - started
    assert statuses.count(200) <= 8 + int(elapsed) + 1, statuses
    assert statuses.count(429) >= 20 - (8 + int(elapsed) + 1)

    assert _ask(one, key) == 200 and _ask(two, key) == 200  # now cached in both
    revoke_key(replicated.engine, found.id)  # as `cdms apikey revoke` does, from elsewhere
    time.sleep(CACHE_S + 0.2)
    assert _ask(one, key) == 401
    assert _ask(two, key) == 401
    revoke_key(replicated.engine, other.id)
