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
``scale``  (``--orders N``, e.g. 1000000: seeded once before timing, ``N/10`` customers;
           or ``--template DB``: a copy of an already seeded database, so that the seed,
           minutes at 1M orders, is paid once for several runs) an existing shop with no
           warehouse yet (``--no-seed-demo``, training off). Its restart finds everything
           current (the warehouse the first start loaded; with ``--train`` also the models
           and stored predictions of a ``cdms ml train`` job run in between).
``existing`` (``--database DB``) two restarts against an existing database, kept as it is.

Besides the seconds to listening and ready: *done*, when the start-up work in the
background is over (its log line ``start-up work done``: the load, scoring; every start
waits for it, so that a restart finds what the start before it did), and the server
process's CPU seconds at ready and at done (the machine is shared: wall times depend on
the load average, shown per start; CPU seconds much less).

Usage: ``DATABASE_URL=postgresql://... .venv/bin/python bench/startup.py [--orders 1000000]
[--template DB] [--train] [--database DB] [--cases scale,existing]``.
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

console = Console(width=150)
_TICKS = os.sysconf("SC_CLK_TCK")


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


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far, its waited-for children's too."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / _TICKS


def timed_start(url: str, args: list[str], env: dict[str, str], log: Path) -> dict[str, float]:
    """Seconds to listening, to ready, to the start-up work done (the background's load,
    scoring, ...) and to every model active (absent: not reached); the server process's
    CPU seconds at ready and at done."""
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

    def at(what: str) -> None:
        if what not in out:
            out[what] = time.perf_counter() - t0
            if what in ("ready", "done"):
                out[f"cpu_{what}"] = cpu_seconds(proc.pid)

    try:
        with httpx.Client(timeout=5) as http:
            while time.perf_counter() - t0 < 3600:
                if proc.poll() is not None:
                    raise SystemExit(f"cdms serve exited: see {log}")
                try:
                    if "listening" not in out and http.get(f"{base}/healthz").status_code == 200:
                        at("listening")
                    if "listening" in out:
                        resp = http.get(f"{base}/readyz")
                        if resp.status_code == 200:
                            at("ready")
                        models = resp.json()["models"].values()
                        if want_models and all(m["ready"] for m in models):
                            at("models")
                except httpx.TransportError:
                    pass
                if "start-up work " in log.read_text(errors="replace"):  # done, or stopped
                    at("done")
                if "ready" in out and "done" in out and (not want_models or "models" in out):
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


def train(url: str, log: Path) -> float:
    """``cdms ml train`` (the production job: trains, registers, scores): seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDMS_")}
    env["DATABASE_URL"] = url
    t = time.perf_counter()
    with log.open("wb") as sink:
        subprocess.run(
            [sys.executable, "-c", "from api.cli import main; main()", "ml", "train"],
            env=env, stdout=sink, stderr=subprocess.STDOUT, check=True,
        )  # fmt: skip
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=0, help="the scale case's orders (0: skip)")
    parser.add_argument(
        "--template", help="the scale case copies this seeded database instead of seeding"
    )
    parser.add_argument(
        "--train",
        action="store_true",
        help="the scale case runs `cdms ml train` (the job) between its first start and the"
        " restart, so that the restart finds models and stored predictions current too",
    )
    parser.add_argument(
        "--database",
        help="the existing case: restarts against this database (kept), everything current",
    )
    parser.add_argument(
        "--cases",
        default="empty,demo,scale,existing",
        help="which cases, comma separated (default all that are set up)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    args = parser.parse_args()

    from db.engine import drop_database, ensure_database, with_database
    from db.migrate import upgrade
    from db.seed import seed

    admin = admin_url()
    tag = secrets.token_hex(3)
    logs = Path(tempfile.mkdtemp(prefix="cdms-bench-startup-"))
    off = {"CDMS_TRAIN_ON_START": "0"}
    cases: list[tuple[str, list[str], dict[str, str], int]] = [
        ("empty", ["--no-seed-demo"], off, 0),
        ("demo", [], {"CDMS_TRAIN_ON_START": "1"}, 0),
    ]
    if args.orders or args.template:
        cases.append(("scale", ["--no-seed-demo"], off, args.orders))
    if args.database:
        cases.append(("existing", ["--no-seed-demo"], off, 0))
    wanted = set(args.cases.split(","))
    cases = [c for c in cases if c[0] in wanted]
    columns = ("listening", "ready", "done", "models", "cpu_ready", "cpu_done")
    table = Table(title=f"cdms serve start-up (logs in {logs})")
    for col in ("case", "start", *(f"{c.replace('_', ' ')} s" for c in columns), "load"):
        table.add_column(col, justify="right" if col.endswith(" s") else "left")
    for name, serve_args, env, orders in cases:
        existing = name == "existing"
        database = args.database if existing else f"bench_startup_{name}_{tag}"
        template = args.template if name == "scale" else None
        if not existing:
            with console.status(f"creating {database}" + (f" from {template}" if template else "")):
                ensure_database(admin, database, template=template)
        url = with_database(admin, database)
        try:
            if orders and not template:
                upgrade(url)
                with console.status(f"seeding {orders // 10:,} customers, {orders:,} orders"):
                    seed(url, orders // 10, orders, 42)
            for start in ("restart", "restart 2") if existing else ("first", "restart"):
                if name == "scale" and args.train and start == "restart":
                    with console.status("cdms ml train (the job)"):
                        took = train(url, logs / "scale-train.log")
                    console.print(f"scale: cdms ml train {took:.1f} s")
                log = logs / f"{name}-{start.replace(' ', '-')}.log"
                with console.status(f"{name}: {start} start"):
                    got = timed_start(url, serve_args, env, log)
                load = f"{os.getloadavg()[0]:.1f}"  # the last minute's
                table.add_row(
                    name,
                    start,
                    *(f"{got[k]:.2f}" if k in got else "-" for k in columns),
                    load,
                )
                console.print(f"{name} {start}: {got} (load average after: {load})")
        finally:
            if not args.keep and not existing:
                from etl import runner

                runner.dispose(url)
                drop_database(admin, database)
    console.print(table)


if __name__ == "__main__":
    main()
