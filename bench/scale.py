"""Scale-out figures on loopback (prints figures; asserts nothing).

A private primary (``initdb``, ``wal_level=replica``) and a streaming standby
(``pg_basebackup``), from tests/scale/cluster.py, a small shop on them, and:

  lag      placeOrder at ``--rate`` writes/s through the app for ``--seconds``: per order,
           the time from its acknowledgement until the standby has replayed its
           commitLsn (polled every 5 ms): p50 / p95 / max
  prepare  the same fast-lane read ``--reads`` times, CDMS_DB_PREPARE auto vs off
           (direct to the primary): ms per read, and the cost of off
  failover the standby made synchronous, placeOrder in a loop, the primary stopped
           (immediate) and the standby promoted: seconds without writes, acknowledged
           orders lost, errors clients saw

and on deploy/compose.ha.yaml's topology from Debian's packages (tests/scale/topology.py:
etcd, Patroni x 2 in synchronous mode, HAProxy, PgBouncer, ``cdms serve`` x 2):

  haproxy  read req/s through HAProxy (wrk, 2 threads x ``--connections``, a fast-lane
           order read, answered by the replica through PgBouncer) with one API process,
           then two; with the CPU each part used over the run (seconds of CPU per second)
  patroni  ``--writers`` clients placing orders through HAProxy (each retries its order
           with an Idempotency-Key until acknowledged); the primary's Patroni and
           PostgreSQL killed (SIGKILL): seconds until Patroni promoted the synchronous
           standby, seconds without writes, acknowledged orders lost, what clients saw

Usage: ``.venv/bin/python bench/scale.py [lag|prepare|failover|haproxy|patroni ...]``
(default: lag prepare failover; haproxy and patroni need patroni, etcd-server, haproxy,
pgbouncer and wrk from Debian).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import resource
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from rich.console import Console  # noqa: E402

from db.engine import dispose_engine, make_engine  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.replicas import HEADER, parse_lsn  # noqa: E402
from tests.api.conftest import build_shop, make_client  # noqa: E402
from tests.scale.cluster import Cluster, Server, pg_bin, wait_for  # noqa: E402
from tests.scale.topology import TIMINGS  # noqa: E402

console = Console()
PLACE = """mutation ($input: PlaceOrderInput!) { placeOrder(input: $input) { id } }"""
READ = """query ($id: ID!) { order(id: $id) { id status items { lineNo quantity } } }"""


def _setup(root: Path) -> tuple[Cluster, Server, Server, Any]:
    bindir = pg_bin()
    assert bindir is not None, "no PostgreSQL binaries (CDMS_PG_BIN)"
    cluster = Cluster(bindir, root)
    primary = cluster.primary()
    primary.sql("CREATE DATABASE cdms")
    upgrade(primary.url("cdms"))
    with make_engine(primary.url("cdms")).begin() as conn:
        shop = build_shop(conn)
    standby = cluster.standby(primary, "standby", cluster_name="'standby'")
    return cluster, primary, standby, shop


def _place_input(shop: Any, product: int = 0) -> dict[str, Any]:
    """One line of one unit (the shop stocks 1,000 of each product: runs use different ones)."""
    return {"customerId": str(shop.customers[1]), "channel": "WEB", "paymentMethod": "CARD",
            "items": [{"productId": str(shop.products[product]), "quantity": 1}]}  # fmt: skip


def lag(primary: Server, standby: Server, shop: Any, rate: float, seconds: float) -> None:
    engine = make_engine(primary.url("cdms"))
    lags: list[float] = []
    done = threading.Event()
    pending: list[tuple[float, int]] = []
    lock = threading.Lock()

    def watch() -> None:
        with psycopg.connect(standby.url("cdms"), autocommit=True) as conn:
            while not done.is_set() or pending:
                row = conn.execute("SELECT pg_last_wal_replay_lsn()::text").fetchone()
                replayed = parse_lsn(str(row[0])) if row and row[0] else -1
                now = time.monotonic()
                with lock:
                    for item in [p for p in pending if p[1] <= replayed]:
                        lags.append(now - item[0])
                        pending.remove(item)
                time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    body = {"query": PLACE, "variables": {"input": _place_input(shop)}}
    with make_client(engine) as client:
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < seconds:
            got = client.post("/graphql", json=body)
            with lock:
                pending.append((time.monotonic(), parse_lsn(got.headers[HEADER])))
            n += 1
            wait = started + n / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        achieved = n / (time.monotonic() - started)
    done.set()
    watcher.join(30)
    q = statistics.quantiles(lags, n=100)
    console.print(
        f"[bold]lag[/]: {n} orders at {achieved:.1f}/s; replay lag after acknowledgement"
        f" p50 {q[49] * 1000:.1f} ms, p95 {q[94] * 1000:.1f} ms, max {max(lags) * 1000:.1f} ms"
    )
    dispose_engine(primary.url("cdms"))


def prepare(primary: Server, shop: Any, reads: int) -> None:
    oid = str(next(o for ids in shop.orders.values() for o in ids))
    body = {"query": READ, "variables": {"id": oid}}
    figures = {}
    for mode in ("auto", "off", "auto", "off"):
        os.environ["CDMS_DB_PREPARE"] = mode
        url = primary.url("cdms") + f"?application_name=bench_{mode}"
        engine = make_engine(url)
        with make_client(engine) as client:
            for _ in range(50):
                client.post("/graphql", json=body)
            started = time.perf_counter()
            for _ in range(reads):
                client.post("/graphql", json=body)
            ms = (time.perf_counter() - started) * 1000 / reads
        figures.setdefault(mode, []).append(ms)
        dispose_engine(url)
    os.environ.pop("CDMS_DB_PREPARE", None)
    auto, off = min(figures["auto"]), min(figures["off"])
    console.print(
        f"[bold]prepare[/]: fast-lane read {auto:.3f} ms with auto, {off:.3f} ms with off"
        f" ({(off / auto - 1) * 100:+.1f}%; best of 2 x {reads} reads, in-process client)"
    )


def failover(primary: Server, standby: Server, shop: Any) -> None:
    primary.sql("UPDATE app.products SET stock = 100000", "cdms")
    primary.sql("ALTER SYSTEM SET synchronous_standby_names = '*'")
    primary.sql("SELECT pg_reload_conf()")
    wait_for(lambda: primary.sql(
        "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'") == 1)  # fmt: skip
    url = (f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/cdms"
           "?target_session_attrs=read-write&connect_timeout=2")  # fmt: skip
    engine = make_engine(url)
    acknowledged: list[str] = []
    errors: dict[str, int] = {}
    body = {"query": PLACE, "variables": {"input": _place_input(shop, 4)}}
    with make_client(engine) as client:

        def order() -> bool:
            got = client.post("/graphql", json=body)
            data = got.json()
            if got.status_code == 200 and "errors" not in data:
                acknowledged.append(data["data"]["placeOrder"]["id"])
                return True
            code = (data.get("errors") or [{}])[0].get("extensions", {}).get("code", "?")
            key = f"{got.status_code} {code}"
            errors[key] = errors.get(key, 0) + 1
            return False

        for _ in range(50):
            order()
        last_ok = time.monotonic()
        primary.stop("immediate")
        standby.promote()
        while not order():
            if time.monotonic() - last_ok > 120:
                console.print(f"[red]failover[/]: no write for 120 s; errors {errors}")
                return
            time.sleep(0.05)
        gap = time.monotonic() - last_ok
        for _ in range(50):
            order()
    with psycopg.connect(standby.url("cdms")) as conn:
        ids = {str(r[0]) for r in conn.execute("SELECT id FROM app.orders").fetchall()}
    lost = len(set(acknowledged) - ids)
    console.print(
        f"[bold]failover[/] (by hand: pg_ctl promote; Patroni adds its ttl/loop_wait): "
        f"{gap:.2f} s without writes, {len(acknowledged)} acknowledged, {lost} lost,"
        f" client errors {errors or 'none'}"
    )
    dispose_engine(url)


WRK_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local ids = {IDS}
local prefix, suffix = [==[PREFIX]==], [==["}}]==]
local n = 0
errors = 0
request = function()
  n = n + 1
  return wrk.format(nil, "/graphql", nil, prefix .. ids[n % #ids + 1] .. suffix)
end
response = function(status, headers, body)
  if status ~= 200 or string.find(body, '"errors"', 1, true) then errors = errors + 1 end
end
local threads = {}
function setup(thread) table.insert(threads, thread) end
function done(summary, latency, requests)
  local e = 0
  for _, t in ipairs(threads) do e = e + t:get("errors") end
  io.write(string.format("CDMS %d %d %f %f %f\\n", summary.requests, e,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.duration / 1e6))
end
"""


def _wrk(base: str, ids: list[str], seconds: float, connections: int) -> dict[str, float]:
    """wrk (2 threads, ``connections``) reading orders ``ids`` in turn for ``seconds``."""
    import json
    import subprocess

    prefix = '{"query":' + json.dumps(" ".join(READ.split())) + ',"variables":{"id":"'
    script = WRK_LUA.replace("IDS", ",".join(f'"{i}"' for i in ids)).replace("PREFIX", prefix)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script)
    try:
        done = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "-s", fh.name, base],
            capture_output=True, text=True, timeout=seconds + 60, check=True,
        )  # fmt: skip
    finally:
        os.unlink(fh.name)
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("CDMS "))
    requests, errors, p50, p99, duration = (float(x) for x in line.split()[1:])
    return {"rps": requests / duration, "errors": errors, "p50": p50, "p99": p99}


class CpuMeter:
    """CPU seconds used by groups of processes (and the whole machine) over a window; a
    process that ends within it is left out (its last figures are gone)."""

    def __init__(self, groups: dict[str, Any]) -> None:
        self.groups = groups  # name -> callable returning the group's psutil processes

    def _sample(self) -> dict[str, dict[int, float]]:
        import psutil

        out: dict[str, dict[int, float]] = {}
        for name, procs in self.groups.items():
            out[name] = {}
            for p in procs():
                with contextlib.suppress(psutil.Error):
                    t = p.cpu_times()
                    out[name][p.pid] = t.user + t.system
        t = psutil.cpu_times()
        out["machine"] = {0: t.user + t.system + t.nice + getattr(t, "softirq", 0)}
        return out

    def start(self) -> None:
        self.t0, self.s0 = time.monotonic(), self._sample()

    def stop(self) -> dict[str, float]:
        """Per group: CPU seconds per wall second (1.0 = one core busy)."""
        s1, wall = self._sample(), time.monotonic() - self.t0
        return {
            name: sum(max(cpu - self.s0[name].get(pid, 0.0), 0.0) for pid, cpu in pids.items())
            / wall
            for name, pids in s1.items()
        }


def _tree(pid: int) -> list[Any]:
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _postgres(topology: Any) -> list[Any]:
    import psutil

    out = []
    for node in topology.nodes:
        pid = node.postmaster()
        if pid is None:
            continue
        with contextlib.suppress(psutil.Error):
            out.extend([psutil.Process(pid), *psutil.Process(pid).children(recursive=True)])
    return out


def _topology(root: Path) -> Any:
    """deploy/compose.ha.yaml's topology with a small shop, API processes not started."""
    from etl import pipeline, runner
    from tests.scale.topology import Topology, missing

    absent = missing() + ([] if shutil_which("wrk") else ["wrk"])
    assert not absent, f"not installed: {', '.join(absent)} (apt-get install them)"
    bindir = pg_bin()
    assert bindir is not None, "no PostgreSQL binaries (CDMS_PG_BIN)"
    topology = Topology(root, bindir)
    topology.start_cluster()
    topology.start_proxies()
    url = topology.write_url()
    upgrade(url)
    with make_engine(url).begin() as conn:
        shop = build_shop(conn)
        conn.exec_driver_sql("UPDATE app.products SET stock = 1000000")
    pipeline.run(url)
    runner.dispose(url)
    dispose_engine(url)
    return topology, shop


def shutil_which(name: str) -> str | None:
    import shutil

    return shutil.which(name)


def haproxy_reads(topology: Any, shop: Any, seconds: float, connections: int) -> None:
    from tests.scale.topology import api_env

    env = api_env(topology.write_url(), topology.read_url(), CDMS_DB_POOL_SIZE="8")
    ids = [str(o) for ids in shop.orders.values() for o in ids]
    apis = topology.apis

    def api_procs() -> list[Any]:
        return [p for a in apis if a.child and a.child.proc for p in _tree(a.child.proc.pid)]

    def proxies() -> list[Any]:
        return _tree(topology.haproxy.child.proc.pid) + _tree(topology.bouncer.proc.pid)

    meter = CpuMeter(
        {"api": api_procs, "postgres": lambda: _postgres(topology), "proxies": proxies}
    )
    results: dict[int, list[float]] = {1: [], 2: []}
    for n in (1, 2, 1, 2):  # twice each, alternating: the machine's other load varies
        if n == 1 and apis[1].child and apis[1].child.alive:
            apis[1].close()
        for api in apis[:n]:
            if not (api.child and api.child.alive):
                api.start(env)
                api.wait_ready()
        want = {f"api/api{i}": "UP" if i <= n else "DOWN" for i in (1, 2)}
        wait_for(lambda want=want: topology.haproxy_states(want) == want, timeout=60)
        _wrk(topology.haproxy.api, ids, 3, connections)  # warm-up
        meter.start()
        wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        got = _wrk(topology.haproxy.api, ids, seconds, connections)
        wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = meter.stop()
        wall = seconds  # wrk's own run
        cpu["wrk"] = (
            wrk_after.ru_utime + wrk_after.ru_stime - wrk_before.ru_utime - wrk_before.ru_stime
        ) / wall
        ours = cpu["api"] + cpu["postgres"] + cpu["proxies"] + cpu["wrk"]
        results[n].append(got["rps"])
        console.print(
            f"[bold]haproxy[/] {n} API process{'es' if n > 1 else ''}: {got['rps']:.0f} req/s,"
            f" p50 {got['p50']:.1f} ms, p99 {got['p99']:.1f} ms, {got['errors']:.0f} errors;"
            f" CPU in cores: API {cpu['api']:.2f}, PostgreSQL {cpu['postgres']:.2f},"
            f" HAProxy+PgBouncer {cpu['proxies']:.2f}, wrk {cpu['wrk']:.2f}; the machine"
            f" {cpu['machine']:.2f} of {os.cpu_count()}, of which other work"
            f" {max(cpu['machine'] - ours, 0):.2f}"
        )
    one, two = max(results[1]), max(results[2])
    console.print(
        f"[bold]haproxy[/]: best of two runs, one API process {one:.0f} req/s, two {two:.0f}:"
        f" x{two / one:.2f} (bounded by the {os.cpu_count()} cores the API processes,"
        " PostgreSQL, HAProxy, PgBouncer and wrk share, and by the other work on the machine)"
    )


def patroni_failover(topology: Any, shop: Any, writers: int) -> None:
    import secrets

    import httpx

    from tests.scale.topology import api_env

    env = api_env(topology.write_url(), topology.read_url())
    for api in topology.apis:
        if not (api.child and api.child.alive):
            api.start(env)
    for api in topology.apis:
        api.wait_ready()
    old = topology.leader()
    standby = next(n for n in topology.nodes if n is not old)
    assert old is not None and standby.endpoint("sync")
    stop = threading.Event()
    lock = threading.Lock()
    acknowledged: dict[str, str] = {}
    acked_at: list[float] = []
    seen: dict[str, int] = {}

    def writer(i: int) -> None:
        n = 0
        with httpx.Client(base_url=topology.haproxy.api, timeout=30) as client:
            while not stop.is_set():
                n += 1
                key = f"bench-{i}-{n}-{secrets.token_hex(4)}"
                body = {"query": PLACE, "variables": {"input": _place_input(shop, n % 5)}}
                while not stop.is_set():
                    try:
                        got = client.post("/graphql", json=body, headers={"Idempotency-Key": key})
                        status = str(got.status_code)
                        ok = got.status_code == 200 and "errors" not in got.json()
                    except (httpx.HTTPError, ValueError) as exc:
                        status, ok = type(exc).__name__, False
                    with lock:
                        seen[status] = seen.get(status, 0) + 1
                        if ok:
                            acknowledged[key] = got.json()["data"]["placeOrder"]["id"]
                            acked_at.append(time.monotonic())
                    if ok:
                        break
                    time.sleep(0.1)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    try:
        time.sleep(5)
        crashed = time.monotonic()
        old.crash()
        wait_for(lambda: standby.endpoint("primary"), timeout=120)
        promoted = time.monotonic() - crashed
        time.sleep(1)
        wait_for(lambda: sum(t > crashed + promoted for t in acked_at) >= 50, timeout=120)
        time.sleep(3)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    gap = max(b - a for a, b in itertools.pairwise(acked_at))
    with psycopg.connect(standby.url("cdms"), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT k.key, o.id FROM app.idempotency_keys k JOIN app.orders o"
            " ON o.id = k.order_id WHERE k.key = ANY(%s)",
            (list(acknowledged),),
        ).fetchall()
    found = {k: str(o) for k, o in rows}
    lost = sum(1 for k, o in acknowledged.items() if found.get(k) != o)
    console.print(
        f"[bold]patroni[/] (SIGKILL of the primary's Patroni and PostgreSQL; ttl"
        f" {TIMINGS['ttl']} s, loop_wait {TIMINGS['loop_wait']} s): standby promoted after"
        f" {promoted:.1f} s, {gap:.1f} s without writes, {len(acknowledged)} acknowledged,"
        f" {lost} lost; {writers} clients saw {dict(sorted(seen.items()))}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", default=["lag", "prepare", "failover"])
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--read-seconds", type=float, default=10.0)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--reads", type=int, default=1000)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # the servers stop in `finally`
    if {"haproxy", "patroni"} & set(args.runs):
        topology, ha_shop = _topology(Path(tempfile.mkdtemp(prefix="cdms-bench-ha-")))
        try:
            if "haproxy" in args.runs:
                haproxy_reads(topology, ha_shop, args.read_seconds, args.connections)
            if "patroni" in args.runs:
                patroni_failover(topology, ha_shop, args.writers)
        finally:
            topology.close()
    if not {"lag", "prepare", "failover"} & set(args.runs):
        return
    root = Path(tempfile.mkdtemp(prefix="cdms-bench-scale-"))
    cluster, primary, standby, shop = _setup(root)
    try:
        if "lag" in args.runs:
            lag(primary, standby, shop, args.rate, args.seconds)
        if "prepare" in args.runs:
            prepare(primary, shop, args.reads)
        if "failover" in args.runs:
            failover(primary, standby, shop)
    finally:
        from ml.serving import close_store_of

        close_store_of(primary.url("cdms"))
        dispose_engine(primary.url("cdms"))
        cluster.close()


if __name__ == "__main__":
    main()
