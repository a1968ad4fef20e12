"""deploy/compose.ha.yaml's topology, from Debian's packages on loopback
(tests/scale/topology.py): etcd, two PostgreSQL 15 servers under Patroni in synchronous
mode, HAProxy (deploy/ha/haproxy.cfg), PgBouncer for the replica reads and two
``cdms serve`` processes. The API's ``DATABASE_URL`` is HAProxy's primary port (it asks
each Patroni's ``/primary``), ``CDMS_READ_URLS`` PgBouncer's ``cdms_ro`` (HAProxy's
replica port behind it).

- One API process killed (SIGKILL) under a read load: HAProxy sends the reads in flight
  again to the other process and stops routing to the dead one; not one read fails.
- The primary's host lost (Patroni and PostgreSQL killed) under a ``placeOrder`` load:
  Patroni promotes the synchronous standby, HAProxy follows it, every order a client saw
  acknowledged is on the new primary (once: the clients retry with an Idempotency-Key),
  and orders are taken again within a bounded time.
- The crashed primary started again: rewound (pg_rewind, no superuser) and following.
- The control planes (HAProxy's statistics, Patroni's unsafe REST calls) refuse callers
  without the deployment's passwords, and no superuser logs in over TCP.
"""

from __future__ import annotations

import itertools
import secrets
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from db.engine import dispose_engine, make_engine
from db.migrate import upgrade
from tests.api.conftest import Shop, build_shop
from tests.scale.cluster import pg_bin_or_skip, wait_for
from tests.scale.topology import SECRETS, Topology, api_env, missing, service_env

pytestmark = [
    pytest.mark.scale,
    pytest.mark.skipif(
        bool(missing()),
        reason=f"not installed: {', '.join(missing())} (apt-get install; .ci/run does)",
    ),
]

READ = """query ($id: ID!) { order(id: $id) { id status items { lineNo product { sku } } } }"""
PLACE = """mutation ($input: PlaceOrderInput!) { placeOrder(input: $input) { id } }"""
WRITES_BACK_WITHIN_S = 60  # Patroni's ttl (10 s here) + HAProxy's checks, with margin


@dataclass
class HA:
    topology: Topology
    shop: Shop

    @property
    def api(self) -> str:
        assert self.topology.haproxy is not None
        return self.topology.haproxy.api


@pytest.fixture(scope="module")
def ha() -> Iterator[HA]:
    bindir = pg_bin_or_skip()
    topology = Topology(Path(tempfile.mkdtemp(prefix="cdms-ha-")), bindir)
    try:
        topology.start_cluster()
        topology.start_proxies()
        url = topology.write_url()
        upgrade(url)  # as the application's role, which deploy/ha/post-init.sh made
        with make_engine(url).begin() as conn:
            shop = build_shop(conn)
        from etl import pipeline, runner

        pipeline.run(url)  # a loaded warehouse: /readyz says ready
        runner.dispose(url)
        dispose_engine(url)
        topology.start_apis(api_env(url, topology.read_url()))
        api_up = {"api/api1": "UP", "api/api2": "UP"}
        wait_for(lambda: topology.haproxy_states(api_up) == api_up, timeout=30)
        yield HA(topology, shop)
    finally:
        topology.close()


@dataclass
class Load:
    """Client threads calling ``work`` until stopped; what they saw."""

    threads: int
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    done: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def saw(self, status: int, failure: str | None = None) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if failure is None:
                self.done += 1
            else:
                self.failures.append(failure)


def _code(got: httpx.Response) -> str | None:
    """The first error's extensions.code of a JSON answer (None: not coded JSON)."""
    try:
        return str(got.json()["errors"][0]["extensions"]["code"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def _run(load: Load, work: Any) -> ThreadPoolExecutor:
    pool = ThreadPoolExecutor(load.threads)
    for i in range(load.threads):
        pool.submit(work, i)
    return pool


def test_an_api_process_killed_under_read_load_fails_no_read(ha: HA) -> None:
    oids = [str(o) for ids in ha.shop.orders.values() for o in ids]
    load = Load(threads=4)

    def reader(i: int) -> None:
        with httpx.Client(base_url=ha.api, timeout=30) as client:
            n = i
            while not load.stop.is_set():
                n += 1
                oid = oids[n % len(oids)]
                try:
                    got = client.post("/graphql", json={"query": READ, "variables": {"id": oid}})
                except httpx.HTTPError as exc:
                    load.saw(0, repr(exc))
                    continue
                body = got.json() if got.status_code == 200 else {}
                ok = got.status_code == 200 and "errors" not in body
                ok = ok and body["data"]["order"]["id"] == oid
                load.saw(got.status_code, None if ok else got.text[:200])

    topology = ha.topology
    victim = topology.apis[0]
    pool = _run(load, reader)
    try:
        wait_for(lambda: load.done >= 100, timeout=60)
        before = load.done
        assert victim.child is not None
        victim.child.kill(signal.SIGKILL)  # the process and everything it started, at once
        gone = {"api/api1": "DOWN"}
        wait_for(lambda: topology.haproxy_states(gone) == gone, timeout=30)
        after_down = load.done
        wait_for(lambda: load.done >= after_down + 100, timeout=60)
    finally:
        load.stop.set()
        pool.shutdown()
    assert topology.haproxy is not None
    retried, redispatched = topology.haproxy.retries()
    print(f"\nAPI process killed: {load.done} reads, 0 failed; HAProxy retried {retried}"
          f" and redispatched {redispatched} requests")  # fmt: skip
    assert load.failures == [], (load.statuses, load.failures[:5])
    assert load.done > before  # reads went on through the other process
    # the killed host comes back: HAProxy routes to it again once its /readyz says ready
    victim.start(victim_env(topology))
    victim.wait_ready()
    up = {"api/api1": "UP"}
    wait_for(lambda: topology.haproxy_states(up) == up, timeout=30)


def victim_env(topology: Topology) -> dict[str, str]:
    return api_env(topology.write_url(), topology.read_url())


def test_a_patroni_failover_under_order_load_loses_no_acknowledged_order(ha: HA) -> None:
    topology = ha.topology
    old = topology.leader()
    assert old is not None
    standby = next(n for n in topology.nodes if n is not old)
    assert standby.endpoint("sync")  # the synchronous standby: it has every acknowledged commit
    load = Load(threads=3)
    acknowledged: dict[str, str] = {}  # Idempotency-Key → order id
    acked_at: list[float] = []

    def orderer(i: int) -> None:
        n = 0
        with httpx.Client(base_url=ha.api, timeout=30) as client:
            while not load.stop.is_set():
                n += 1
                key = f"ha-{i}-{n}-{secrets.token_hex(4)}"
                item = {"productId": str(ha.shop.products[n % 5]), "quantity": 1}
                place = {"customerId": str(ha.shop.customers[i % len(ha.shop.customers)]),
                         "channel": "WEB", "paymentMethod": "CARD", "items": [item]}  # fmt: skip
                # a client retries one order with its key until it is acknowledged
                while not load.stop.is_set():
                    try:
                        got = client.post(
                            "/graphql",
                            json={"query": PLACE, "variables": {"input": place}},
                            headers={"Idempotency-Key": key},
                        )
                    except httpx.HTTPError as exc:
                        load.saw(0, repr(exc))
                        time.sleep(0.2)
                        continue
                    body = got.json() if got.status_code == 200 else {}
                    if got.status_code == 200 and "errors" not in body:
                        with load.lock:
                            acknowledged[key] = body["data"]["placeOrder"]["id"]
                            acked_at.append(time.monotonic())
                        load.saw(200)
                        break
                    # a 503 is coded JSON, from cdms or from HAProxy with no API ready;
                    # anything else counts as its negative status (the assertion fails)
                    coded = got.status_code == 503 and _code(got) == "SERVICE_UNAVAILABLE"
                    status = got.status_code if coded else -got.status_code
                    load.saw(status, f"{got.status_code} {got.text[:200]}")
                    time.sleep(0.2)

    pool = _run(load, orderer)
    try:
        wait_for(lambda: load.done >= 30, timeout=60)
        crashed = time.monotonic()
        old.crash()  # the primary's host is lost: Patroni and PostgreSQL, SIGKILL
        wait_for(lambda: standby.endpoint("primary"), timeout=WRITES_BACK_WITHIN_S)
        promoted = time.monotonic()

        def written_after_promotion() -> bool:
            with load.lock:
                return sum(t > promoted for t in acked_at) >= 20

        wait_for(written_after_promotion, timeout=WRITES_BACK_WITHIN_S)
    finally:
        load.stop.set()
        pool.shutdown()
    # seconds without writes: the longest wait between two acknowledgements
    gap = max(b - a for a, b in itertools.pairwise(acked_at))
    back = min(t for t in acked_at if t > promoted) - crashed
    print(f"\nfailover: standby promoted {promoted - crashed:.1f} s after the crash, first"
          f" order {back:.1f} s after it, {gap:.1f} s without writes; {len(acknowledged)}"
          f" orders acknowledged, clients saw {load.statuses}")  # fmt: skip
    assert back < WRITES_BACK_WITHIN_S and gap < WRITES_BACK_WITHIN_S
    # what clients saw meanwhile: 503s coded SERVICE_UNAVAILABLE in JSON (from cdms, or
    # from HAProxy's http-error while no API process was ready), never a 500
    assert set(load.statuses) <= {200, 503}, (load.statuses, load.failures[:5])
    with psycopg.connect(standby.url("cdms"), autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
        rows = conn.execute(
            "SELECT k.key, o.id FROM app.idempotency_keys k JOIN app.orders o"
            " ON o.id = k.order_id WHERE k.key = ANY(%s)",
            (list(acknowledged),),
        ).fetchall()
    found = {k: str(o) for k, o in rows}
    assert found == acknowledged  # every acknowledged order there, under its key, once


def test_the_former_primary_rejoins_through_pg_rewind_without_a_superuser(ha: HA) -> None:
    """After the failover above, the crashed primary's Patroni starts again: it rewinds its
    server from the new primary (pg_rewind as the role ``rewind``, which pg_hba admits
    from the cluster network, where no superuser may log in) and follows it as its
    synchronous standby. The tests' servers run with ``full_page_writes = off``
    (``SMALL``); pg_rewind needs it on, set first through Patroni's REST API with its
    credentials (deploy/compose.ha.yaml's), as an operator's ``patronictl edit-config``."""
    topology = ha.topology
    leader = topology.leader()
    assert leader is not None
    old = next(n for n in topology.nodes if n.child is None or not n.child.alive)
    env = service_env(leader.name)
    got = httpx.patch(
        f"http://127.0.0.1:{leader.api}/config",
        json={"postgresql": {"parameters": {"full_page_writes": "on"}}},
        auth=(env["PATRONI_RESTAPI_USERNAME"], env["PATRONI_RESTAPI_PASSWORD"]),
        timeout=10,
    )
    assert got.status_code == 200, got.text

    def full_page_writes() -> bool:
        with psycopg.connect(leader.url("cdms"), connect_timeout=2) as conn:
            return conn.execute("SHOW full_page_writes").fetchone() == ("on",)

    wait_for(full_page_writes, timeout=30)
    old.start()
    wait_for(lambda: old.endpoint("sync"), timeout=90)
    log = "".join(p.read_text() for p in old.root.glob("patroni.log*"))
    rewound = "running pg_rewind" in log  # the crash left WAL past the fork: it diverged
    if rewound:
        assert "pg_rewind exit code=0" in log and "user=rewind" in log, log[-3000:]
    how = "rewound by pg_rewind" if rewound else "no rewind needed"
    print(f"\nthe former primary is the synchronous standby again ({how})")
    assert topology.leader() is leader


def test_the_apis_see_a_clients_own_address_through_haproxy(ha: HA) -> None:
    """The third hostile review: with the APIs trusting X-Forwarded-For from HAProxy, a
    header the client sent itself came first, and uvicorn took it: a client chose its own
    address for every per-address bound (or locked another address out). HAProxy drops it
    (deploy/ha/haproxy.cfg) and adds the address it saw."""
    spoofed = "198.51.100.50"
    marker = f"xff-{uuid.uuid4().hex}"
    with httpx.Client(base_url=ha.api, timeout=10) as client:
        for _ in range(4):  # round-robin: both APIs
            got = client.get(f"/healthz?{marker}", headers={"X-Forwarded-For": spoofed})
            assert got.status_code == 200, got.text
    logs = "".join(a.root.joinpath("serve.log").read_text() for a in ha.topology.apis)
    seen = [line for line in logs.splitlines() if marker in line]
    assert len(seen) == 4, seen
    assert all(spoofed not in line and "127.0.0.1" in line for line in seen), seen


def test_the_control_planes_and_the_superuser_refuse_anonymous_callers(ha: HA) -> None:
    """Hostile probe 13 (M5): HAProxy's statistics and Patroni's REST API answered anyone
    (a switchover, a restart, `PATCH /config` setting `archive_command`: commands run on
    the database hosts), and pg_hba let the superuser in from anywhere. With deploy's
    settings (ha/haproxy.cfg's `stats auth`, the compose file's Patroni authentication,
    ha/patroni.yml's pg_hba with its subnet as 127.0.0.1/32) each is refused. Last in the
    module: were one let through, it would change the cluster."""
    topology = ha.topology
    assert topology.haproxy is not None
    assert httpx.get(topology.haproxy.stats, timeout=5).status_code == 401
    leader = topology.leader()
    assert leader is not None
    unsafe = [
        ("POST", "/restart", {}),
        ("POST", "/switchover", {"leader": leader.name}),
        ("PATCH", "/config", {"postgresql": {"parameters": {"archive_command": "false"}}}),
    ]
    for method, path, body in unsafe:
        for auth in (None, ("patroni", "wrong")):
            got = httpx.request(
                method, f"http://127.0.0.1:{leader.api}{path}", json=body, auth=auth, timeout=5
            )
            assert got.status_code == 401, (method, path, auth, got.text)
    assert topology.leader() is leader and leader.state()["state"] == "running"
    # etcd: Patroni's keys are neither read nor written anonymously (whoever writes the
    # leader key picks the primary), and Patroni's own user reaches nothing else
    key = f"/service/{leader.scope}/leader"
    for args in (["get", key], ["put", key, "pg-evil"], ["del", "--prefix", "/service/"]):
        got = topology.etcd.ctl(*args)
        assert got.returncode != 0 and "user name is empty" in got.stderr, (args, got)
    got = topology.etcd.ctl("get", key, user="patroni", password="wrong")
    assert got.returncode != 0 and "authentication failed" in got.stderr, got
    patroni = SECRETS["CDMS_ETCD_PATRONI_PASSWORD"]
    got = topology.etcd.ctl("get", key, "--print-value-only", user="patroni", password=patroni)
    # (etcdctl writes its prompt for the password on stdout)
    assert got.returncode == 0 and got.stdout.removeprefix("Password: ").strip() == leader.name, got
    for args in (["put", "/elsewhere", "x"], ["user", "list"], ["auth", "disable"]):
        got = topology.etcd.ctl(*args, user="patroni", password=patroni)
        assert got.returncode != 0 and "permission denied" in got.stderr, (args, got)
    password = SECRETS["CDMS_PG_SUPERUSER_PASSWORD"]
    for port in (leader.port, topology.haproxy.primary):  # straight, and through HAProxy
        with pytest.raises(psycopg.OperationalError, match=r"pg_hba\.conf rejects"):
            psycopg.connect(
                f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres", connect_timeout=5
            ).close()
