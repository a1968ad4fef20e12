"""Start-up benchmark: time to listening and time to ready of ``cdms serve`` (prints figures;
asserts nothing).

Each case starts the real ``cdms serve`` on loopback against a database of its own on
``DATABASE_URL``'s server (``bench_startup_<case>``, dropped afterwards unless ``--keep``)
and polls every 50 ms: *listening* is the first ``/healthz`` 200, *ready* the first
``/readyz`` 200 (the API and a loaded warehouse), *models* when ``/readyz`` shows every
model active (the demo trains in the background; elsewhere training is off, as in
production, and the column is empty). Then the same server is started again on the same
database (*restart*: everything current, no heavy work expected).

``empty``  a migrated database, no rows (``--no-seed-demo``).
``demo``   an empty database the server seeds (2,000 customers / 20,000 orders) and trains.
``scale``  (``--orders N``, e.g. 1000000: seeded once before timing, ``N/10`` customers)
           an existing shop with no warehouse yet (``--no-seed-demo``, training off).

Usage: ``DATABASE_URL=postgresql://... .venv/bin/python bench/startup.py [--orders 1000000]``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

console = Console()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def admin_url() -> str:
    from db.config import DbSettings, to_libpq_url

    settings = DbSettings.from_env()
    if not settings.database_url:
        raise SystemExit("set DATABASE_URL to a PostgreSQL server (the bench makes databases)")
    return to_libpq_url(settings.database_url)


def timed_start(url: str, args: list[str], env: dict[str, str], log: Path) -> dict[str, float]:
    """Seconds to listening, to ready and to every model active (absent: not reached)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    full = {k: v for k, v in os.environ.items() if not k.startswith("CDMS_")}
    full.update(env, DATABASE_URL=url, CDMS_DEMO_OPEN="1", CDMS_RATE_LIMIT="0")
    full["CDMS_DATA_DIR"] = tempfile.mkdtemp(prefix="cdms-bench-")
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from api.cli import main; main()", "serve",
             "--port", str(port), *args],
            env=full, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    want_models = env.get("CDMS_TRAIN_ON_START") == "1"
    try:
        with httpx.Client(timeout=5) as http:
            while time.perf_counter() - t0 < 3600:
                if proc.poll() is not None:
                    raise SystemExit(f"cdms serve exited: see {log}")
                try:
                    if "listening" not in out and http.get(f"{base}/healthz").status_code == 200:
                        out["listening"] = time.perf_counter() - t0
                    if "listening" in out:
                        resp = http.get(f"{base}/readyz")
                        if resp.status_code == 200 and "ready" not in out:
                            out["ready"] = time.perf_counter() - t0
                        models = resp.json()["models"].values()
                        if want_models and all(m["ready"] for m in models):
                            out["models"] = time.perf_counter() - t0
                except httpx.TransportError:
                    pass
                if "ready" in out and (not want_models or "models" in out):
                    break
                time.sleep(0.05)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=0, help="the scale case's orders (0: skip)")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    args = parser.parse_args()

    from db.engine import drop_database, ensure_database, with_database
    from db.migrate import upgrade
    from db.seed import seed

    admin = admin_url()
    tag = secrets.token_hex(3)
    logs = Path(tempfile.mkdtemp(prefix="cdms-bench-startup-"))
    cases: list[tuple[str, list[str], dict[str, str], int]] = [
        ("empty", ["--no-seed-demo"], {"CDMS_TRAIN_ON_START": "0"}, 0),
        ("demo", [], {"CDMS_TRAIN_ON_START": "1"}, 0),
    ]
    if args.orders:
        cases.append(("scale", ["--no-seed-demo"], {"CDMS_TRAIN_ON_START": "0"}, args.orders))
    table = Table(title=f"cdms serve start-up (logs in {logs})")
    for col in ("case", "start", "listening s", "ready s", "models s"):
        table.add_column(col, justify="right" if col.endswith(" s") else "left")
    for name, serve_args, env, orders in cases:
        database = f"bench_startup_{name}_{tag}"
        ensure_database(admin, database)
        url = with_database(admin, database)
        try:
            if orders:
                upgrade(url)
                with console.status(f"seeding {orders // 10:,} customers, {orders:,} orders"):
                    seed(url, orders // 10, orders, 42)
            for start in ("first", "restart"):
                log = logs / f"{name}-{start}.log"
                with console.status(f"{name}: {start} start"):
                    got = timed_start(url, serve_args, env, log)
                table.add_row(
                    name,
                    start,
                    *(
                        f"{got[k]:.2f}" if k in got else "-"
                        for k in ("listening", "ready", "models")
                    ),
                )
                console.print(f"{name} {start}: {got}")
        finally:
            if not args.keep:
                from etl import runner

                runner.dispose(url)
                drop_database(admin, database)
    console.print(table)


if __name__ == "__main__":
    main()
