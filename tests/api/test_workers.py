"""``cdms serve --workers 2`` on the embedded default: the supervising process prepares the
database and keeps the embedded server; two uvicorn worker processes answer on one port,
each with its own engine and fast lane, and one rate limit holds across both (the buckets
are in PostgreSQL); SIGTERM stops them all and frees the data folder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil

from api.lock import ServeLock
from db.server import running_pid
from tests.reliability._server import free_port, stop, wait_healthy

QUERY = "query ($id: ID!) { product(id: $id) { id sku } }"
SECRET = "workers-test-secret-0123456789abcdef"


def _token(who: str) -> str:
    from api.auth import encode_jwt

    return encode_jwt({"role": "analyst", "sub": who, "exp": int(time.time()) + 600}, SECRET)


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_two_workers_answer_on_one_port_and_stop_on_sigterm(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("CDMS_")}
    env.update(
        CDMS_DATA_DIR=str(data),
        CDMS_DEMO_OPEN="1",
        CDMS_RATE_LIMIT="2,10",
        CDMS_JWT_SECRET=SECRET,
        CDMS_DEMO_CUSTOMERS="50",
        CDMS_DEMO_ORDERS="300",
        CDMS_ETL_MODE="off",
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cdms = str(Path(sys.executable).parent / "cdms")
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [cdms, "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_healthy(proc, base, timeout=240)  # initdb, seed, then the warehouse loaded
        supervisor = psutil.Process(proc.pid)
        children = supervisor.children()
        workers = [  # (the other child runs the pipeline: no request reaches it)
            p
            for p in children
            if any(c.status == psutil.CONN_LISTEN for c in p.net_connections("tcp"))
        ]
        assert len(workers) == 2, [p.cmdline() for p in children]

        def ask(i: int, who: str | None = None) -> tuple[int, dict[str, object]]:
            with httpx.Client(base_url=base, timeout=30) as client:  # its own connection
                resp = client.post(
                    "/graphql",
                    json={"query": QUERY, "variables": {"id": str(1 + i % 20)}},
                    headers={"Authorization": f"Bearer {_token(who or f'caller-{i}')}"},
                )
                return resp.status_code, resp.json()

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(ask, range(64)))
        assert all(status == 200 for status, _ in answers), answers
        assert all("errors" not in body for _, body in answers), answers
        assert {body["data"]["product"]["id"] for _, body in answers} == {  # type: ignore[index]
            str(i) for i in range(1, 21)
        }
        # one principal, spread over both workers: one bucket (10, then 2 a second)
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            burst = list(pool.map(lambda i: ask(i, "one-principal"), range(40)))
        allowed = 10 + 2 * (time.monotonic() - started) + 1
        accepted = [s for s, _ in burst].count(200)
        assert accepted <= allowed, (accepted, allowed)
        assert [s for s, _ in burst].count(429) == 40 - accepted

        proc.terminate()
        assert proc.wait(timeout=30) == 0, (tmp_path / "serve.log").read_text()
        # every child goes with it: the workers and the pipeline's process are joined
        # before it exits; multiprocessing's resource tracker leaves when its pipe to
        # the exited supervisor closes, a moment later on a busy machine
        deadline = time.monotonic() + 15
        while any(_alive(p) for p in children):
            alive = [p.cmdline() for p in children if _alive(p)]
            assert time.monotonic() < deadline, f"children outlived cdms serve: {alive}"
            time.sleep(0.1)
        # cdms serve asked the embedded postmaster to stop; it finishes exiting on its own
        # (under load it can take a moment after cdms has gone)
        deadline = time.monotonic() + 60
        while running_pid(data) is not None:
            assert time.monotonic() < deadline, "the embedded server must stop with cdms serve"
            time.sleep(0.2)
        holder = ServeLock(data)
        holder.acquire("http://127.0.0.1:1")  # the data folder is free again
        holder.release()
        deadline = time.monotonic() + 5
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=1)
            except httpx.TransportError:
                break
            assert time.monotonic() < deadline, "the port still answers after exit"
            time.sleep(0.1)
    finally:
        stop(proc)
        log.close()
