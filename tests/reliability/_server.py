"""Helpers shared by the reliability tests: a free loopback port and waiting for /readyz."""

from __future__ import annotations

import socket
import subprocess
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(
    proc: subprocess.Popen[bytes],
    base: str,
    timeout: float = 60,
    *,
    models: bool = False,
    ready: bool = True,
) -> None:
    """Until ``/readyz`` says ready (the API and a loaded warehouse); with ``models``, until
    every model is active too (training runs in the background after the server listens);
    ``ready=False``: until ``/healthz`` answers 200 (a bare app that loads no warehouse)."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"server exited with {proc.returncode}"
        try:
            resp = httpx.get(f"{base}/{'readyz' if ready else 'healthz'}", timeout=2)
            body = resp.json()
            if resp.status_code == 200 and (
                not ready or not models or all(m["ready"] for m in body["models"].values())
            ):
                return
        except (httpx.TransportError, ValueError):
            pass
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate ``proc`` if it still runs (kill after 15 s)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
