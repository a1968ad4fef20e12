"""deploy/compose.ha.yaml's topology on loopback, from Debian's packages: etcd, two
PostgreSQL 15 servers managed by Patroni (``deploy/ha/patroni.yml``: synchronous mode),
HAProxy (``deploy/ha/haproxy.cfg``: the primary and the replicas found through Patroni's
REST API, the API round-robin over ``/readyz``), PgBouncer in transaction mode for the
replica reads, and ``cdms serve`` processes.

The deployment's own configuration files are used, with only the addresses rewritten to
free loopback ports (pg_hba's subnet, the compose file's cluster network, becomes
127.0.0.1/32) and Patroni's timings shortened (``TIMINGS``), so what the tests prove is
what ``deploy/`` ships. The operator's secrets (``deploy/.env.example``) are made up for
each run (``SECRETS``) and reach Patroni and HAProxy as the compose file passes them
(``service_env``): scram-sha-256 logins, the REST API's and the statistics' passwords.

Every process runs in a process group of its own (a Patroni's PostgreSQL in the session
its postmaster opens) and is killed with that group; everything lives under one
temporary folder, removed afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.scale.cluster import Bouncer, free_port, own, wait_for

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "ha"
COMPOSE = DEPLOY.parent / "compose.ha.yaml"
TOOLS = {  # Debian package: the executable it brings
    "etcd-server": "etcd",
    "etcd-client": "etcdctl",
    "patroni": "patroni",
    "haproxy": "haproxy",
    "pgbouncer": "pgbouncer",
}
# Patroni's defaults (deploy/ha/patroni.yml: ttl 30, loop_wait 10) make a failover take
# 30-40 s; the tests use the shortest timings Patroni's rule (loop_wait + 2 x retry_timeout
# <= ttl) allows with some margin
TIMINGS = {"ttl": 10, "loop_wait": 1, "retry_timeout": 4}
SMALL = {  # the machine is shared; these servers hold a few thousand rows
    "max_connections": 60,
    "shared_buffers": "16MB",
    "fsync": "off",  # the tests kill processes, never the machine: the page cache survives
    "full_page_writes": "off",
    "wal_receiver_status_interval": "1s",
    "log_min_messages": "warning",
}
# what an operator puts in deploy/.env, made up for this run
SECRETS = {
    name: secrets.token_hex(16)
    for name in re.findall(r"^([A-Z0-9_]+)=", (DEPLOY.parent / ".env.example").read_text(), re.M)
}
PASSWORD = SECRETS["CDMS_DB_PASSWORD"]  # the application's role, made by ha/post-init.sh
# the environment the compose file gives Patroni that is not an address: the passwords
PATRONI_SECRETS = ("PATRONI_SUPERUSER_", "PATRONI_REPLICATION_", "PATRONI_REWIND_",
                   "PATRONI_RESTAPI_", "PATRONI_ETCD3_USERNAME", "PATRONI_ETCD3_PASSWORD",
                   "CDMS_DB_PASSWORD")  # fmt: skip


def service_env(service: str) -> dict[str, str]:
    """``service``'s environment in deploy/compose.ha.yaml, each ``${VAR:?...}`` filled from
    ``SECRETS`` (one the example does not list fails, as ``docker compose up`` would)."""
    compose: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())

    def secret(m: re.Match[str]) -> str:
        assert m["name"] in SECRETS, f"{m['name']} is not in deploy/.env.example"
        return SECRETS[m["name"]]

    env = compose["services"][service].get("environment") or {}
    return {
        k: re.sub(r"\$\{(?P<name>[A-Z0-9_]+):\?[^}]*\}", secret, str(v)) for k, v in env.items()
    }


def cluster_subnet() -> str:
    """The compose file's internal network, the only one ha/patroni.yml's pg_hba admits."""
    compose: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return str(compose["networks"]["cluster"]["ipam"]["config"][0]["subnet"])


def executable(tool: str) -> str | None:
    return shutil.which(tool) or next(
        (p for p in (f"/usr/sbin/{tool}", f"/usr/bin/{tool}") if Path(p).is_file()), None
    )


def missing() -> list[str]:
    """The Debian packages whose executables are not installed."""
    return [package for package, tool in TOOLS.items() if executable(tool) is None]


@dataclass
class Child:
    """A process in a process group of its own, its output in ``log``."""

    argv: list[str]
    log: Path
    env: dict[str, str] | None = None
    user: str | None = None
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
                user=self.user,
                group=self.user,
                extra_groups=[] if self.user else None,
            )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL, wait: float = 10) -> None:
        """``sig`` to the whole group; with SIGKILL (or after ``wait`` s) it is gone."""
        if self.proc is None:
            return
        _killpg(self.proc.pid, sig)
        try:
            self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            _killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        _killpg(self.proc.pid, signal.SIGKILL)  # what the leader left behind

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def http_ok(url: str, auth: tuple[str, str] | None = None) -> bool:
    try:
        return httpx.get(url, timeout=1, auth=auth).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Etcd:
    root: Path
    port: int = field(default_factory=free_port)
    peer: int = field(default_factory=free_port)
    child: Child | None = None

    def start(self, *, init: bool = True) -> None:
        """etcd, then (``init``) deploy's etcd-init job: users root and patroni,
        authentication on."""
        exe = executable("etcd")
        assert exe is not None
        self.root.mkdir(parents=True, exist_ok=True)
        me, peer = f"http://127.0.0.1:{self.port}", f"http://127.0.0.1:{self.peer}"
        self.child = Child(
            [exe, "--name", "etcd", "--data-dir", str(self.root / "data"),
             "--listen-client-urls", me, "--advertise-client-urls", me,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"etcd={peer}", "--log-level", "warn"],
            self.root / "etcd.log",
        )  # fmt: skip
        self.child.start()
        wait_for(lambda: http_ok(f"{me}/health"), timeout=30)
        if init:
            done = self.init()
            assert done.returncode == 0, done.stdout + done.stderr

    def init(self, **secrets: str) -> subprocess.CompletedProcess[str]:
        """deploy/ha/etcd-init.sh against this etcd, with the compose file's environment
        for the job (``secrets`` in place of some of its values)."""
        env = {
            **service_env("etcd-init"),
            **secrets,
            "ETCD_ENDPOINTS": f"http://127.0.0.1:{self.port}",
            "PATH": os.environ["PATH"],
        }
        return subprocess.run(
            ["sh", str(DEPLOY / "etcd-init.sh")], env=env, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip

    def ctl(
        self, *args: str, user: str | None = None, password: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``etcdctl args`` against this etcd (the password on stdin, as etcd-init.sh
        gives it)."""
        exe = executable("etcdctl")
        assert exe is not None
        login = [] if user is None else [f"--user={user}"]
        return subprocess.run(
            [exe, f"--endpoints=http://127.0.0.1:{self.port}", *login, *args],
            input=f"{password}\n" if password is not None else "",
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip

    def close(self) -> None:
        if self.child is not None:
            self.child.kill()


@dataclass
class PatroniNode:
    """One Patroni (running as ``postgres``) and the PostgreSQL it manages."""

    name: str
    root: Path
    bindir: Path
    etcd: Etcd
    scope: str
    port: int = field(default_factory=free_port)  # PostgreSQL
    api: int = field(default_factory=free_port)  # Patroni's REST API
    child: Child | None = None

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    def config(self) -> dict[str, Any]:
        """deploy/ha/patroni.yml on loopback: its pg_hba admits 127.0.0.1/32 where it
        admits the compose file's cluster network."""
        conf: dict[str, Any] = yaml.safe_load((DEPLOY / "patroni.yml").read_text())
        dcs = conf["bootstrap"]["dcs"]
        dcs.update(TIMINGS)
        dcs["postgresql"]["parameters"].update(SMALL)
        pg = conf["postgresql"]
        subnet = cluster_subnet()
        hba = [str(line).replace(subnet, "127.0.0.1/32") for line in pg["pg_hba"]]
        assert sum("127.0.0.1/32" in line for line in hba) >= 3, hba
        if os.geteuid() != 0:  # Patroni runs as this user, not postgres: peer refuses it
            hba = [line.replace(" peer", " scram-sha-256") for line in hba]
        pg.update(
            listen=f"127.0.0.1:{self.port}",
            connect_address=f"127.0.0.1:{self.port}",
            data_dir=str(self.datadir),
            bin_dir=str(self.bindir),
            pgpass=str(self.root / "pgpass"),
            pg_hba=hba,
            parameters={"unix_socket_directories": str(self.root)},
        )
        script = self.root / "post-init.sh"  # deploy's, run by Patroni once, on the leader
        shutil.copy(DEPLOY / "post-init.sh", script)
        script.chmod(0o755)
        conf["bootstrap"]["post_bootstrap"] = str(script)
        conf.update(
            scope=self.scope,
            name=self.name,
            restapi={"listen": f"127.0.0.1:{self.api}", "connect_address": f"127.0.0.1:{self.api}"},
            log={"level": "INFO", "dir": str(self.root), "file_num": 1},
        )
        conf.pop("etcd", None)
        conf.pop("etcd3", None)  # from the environment, as in the compose file (start)
        return conf

    def start(self) -> None:
        exe = executable("patroni")
        assert exe is not None
        self.root.mkdir(parents=True, exist_ok=True)
        own(self.root)
        conf = self.root / "patroni.yml"
        conf.write_text(json.dumps(self.config(), indent=1))  # JSON is YAML
        own(conf)
        path = f"{self.bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}"  # psql for post-init
        env = {"PATH": path, "HOME": str(self.root), "LANG": "C.UTF-8"}
        # the users and passwords, as deploy/compose.ha.yaml gives them (not the addresses)
        env.update(
            (k, v) for k, v in service_env(self.name).items() if k.startswith(PATRONI_SECRETS)
        )
        # (Patroni reads PATRONI_ETCD3_USERNAME/PASSWORD only beside an etcd3 setting of the
        # environment: the compose file's is PATRONI_ETCD3_HOSTS, the address here)
        env["PATRONI_ETCD3_HOSTS"] = f"127.0.0.1:{self.etcd.port}"
        user = "postgres" if os.geteuid() == 0 else None
        self.child = Child([exe, str(conf)], self.root / "patroni.out", env, user)
        self.child.start()

    def state(self) -> dict[str, Any]:
        got = httpx.get(f"http://127.0.0.1:{self.api}/patroni", timeout=2)
        return dict(got.json())

    def endpoint(self, what: str) -> bool:
        """Patroni's health endpoints: ``primary``, ``replica``, ``sync``..."""
        return http_ok(f"http://127.0.0.1:{self.api}/{what}")

    def url(self, database: str = "cdms") -> str:
        """The application's role on this server (pg_hba lets no superuser in over TCP)."""
        return f"postgresql://cdms:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def postmaster(self) -> int | None:
        try:
            return int((self.datadir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def crash(self) -> None:
        """The host is lost: Patroni and its PostgreSQL killed at once (SIGKILL). The
        postmaster runs in the session of a helper Patroni forked (gone by now): its
        process group, with every backend, is that session's."""
        pid = self.postmaster()
        group = None
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                group = os.getpgid(pid)
        if self.child is not None and self.child.proc is not None:
            _killpg(self.child.proc.pid, signal.SIGKILL)
        if group is not None:
            _killpg(group, signal.SIGKILL)
        if self.child is not None:
            self.child.kill()  # reaped

    close = crash


@dataclass
class HAProxy:
    root: Path
    nodes: list[PatroniNode]
    apis: list[int]  # the cdms serve ports, api1, api2...
    ports: dict[str, int] = field(default_factory=dict)  # deploy port → loopback port
    child: Child | None = None
    auth: tuple[str, str] | None = None  # the statistics page's user and password

    def config(self) -> str:
        """deploy/ha/haproxy.cfg with every address rewritten to loopback."""
        text = (DEPLOY / "haproxy.cfg").read_text()

        def bind(m: re.Match[str]) -> str:
            port = self.ports.setdefault(m.group(1), free_port())
            return f"bind 127.0.0.1:{port}"

        def server(m: re.Match[str]) -> str:
            name = m.group(1)
            if name.startswith("pg"):
                node = self.nodes[int(name[2:]) - 1]
                return f"server {name} 127.0.0.1:{node.port}"
            return f"server {name} 127.0.0.1:{self.apis[int(name[3:]) - 1]}"

        text = re.sub(r"bind \*:(\d+)", bind, text)
        text = re.sub(r"server (pg\d|api\d) \S+", server, text)
        ports = {n.name: n.api for n in self.nodes}
        # `check port 8008`: each node's own Patroni port
        text = re.sub(
            r"(server (pg\d) 127\.0\.0\.1:\d+ check port) 8008",
            lambda m: f"{m.group(1)} {ports[m.group(2)]}",
            text,
        )
        assert "8008" not in text and "*:" not in text, text
        user = re.search(r'stats auth "(\w+):\$\{CDMS_HAPROXY_STATS_PASSWORD\}"', text)
        assert user is not None, "the statistics page takes a password"
        self.auth = (user.group(1), SECRETS["CDMS_HAPROXY_STATS_PASSWORD"])
        return text

    @property
    def primary(self) -> int:
        return self.ports["5000"]

    @property
    def replicas(self) -> int:
        return self.ports["5001"]

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['8000']}"

    @property
    def stats(self) -> str:
        return f"http://127.0.0.1:{self.ports['8404']}/"

    def start(self) -> None:
        exe = executable("haproxy")
        assert exe is not None
        self.root.mkdir(parents=True, exist_ok=True)
        cfg = self.root / "haproxy.cfg"
        cfg.write_text(self.config())
        env = {**os.environ, **service_env("haproxy")}  # the statistics' password
        subprocess.run([exe, "-c", "-q", "-f", str(cfg)], check=True, capture_output=True, env=env)
        self.child = Child([exe, "-db", "-f", str(cfg)], self.root / "haproxy.log", env)
        self.child.start()
        wait_for(lambda: http_ok(self.stats, self.auth), timeout=15)

    def server_states(self) -> dict[str, str]:
        """``backend/server`` → UP / DOWN ..., from the statistics page's CSV."""
        rows = httpx.get(f"{self.stats};csv", timeout=2, auth=self.auth).text.splitlines()
        out = {}
        for row in rows[1:]:
            cols = row.split(",")
            if len(cols) > 17 and cols[1] not in ("FRONTEND", "BACKEND"):
                out[f"{cols[0]}/{cols[1]}"] = cols[17]
        return out

    def retries(self, backend: str = "api") -> tuple[int, int]:
        """(requests retried, requests redispatched to another server) by ``backend``."""
        csv = httpx.get(f"{self.stats};csv", timeout=2, auth=self.auth).text
        for row in csv.splitlines()[1:]:
            cols = row.split(",")
            if cols[:2] == [backend, "BACKEND"]:
                return int(cols[15] or 0), int(cols[16] or 0)
        return 0, 0

    def close(self) -> None:
        if self.child is not None:
            self.child.kill()


@dataclass
class Api:
    """One ``cdms serve`` process."""

    root: Path
    port: int = field(default_factory=free_port)
    child: Child | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, env: dict[str, str]) -> None:
        """``cdms serve`` with ``env`` (its own data folder, as on a host of its own)."""
        self.root.mkdir(parents=True, exist_ok=True)
        cdms = str(Path(sys.executable).parent / "cdms")
        env = {**env, "CDMS_DATA_DIR": str(self.root / "data")}
        argv = [cdms, "serve", "--port", str(self.port), "--no-seed-demo"]
        self.child = Child(argv, self.root / "serve.log", env)
        self.child.start()

    def wait_ready(self, timeout: float = 120) -> None:
        def ready() -> bool:
            assert self.child is not None and self.child.alive, self.root / "serve.log"
            return http_ok(f"{self.base}/readyz")

        wait_for(ready, timeout=timeout, every=0.2)

    def close(self) -> None:
        """SIGTERM (uvicorn's graceful stop), SIGKILL after 5 s: with its primary gone a
        server can take its whole shutdown timeout, which a test need not wait for."""
        if self.child is not None:
            self.child.kill(signal.SIGTERM, wait=5)


def api_env(database_url: str, read_urls: str, **extra: str) -> dict[str, str]:
    """The API containers' environment (deploy/compose.ha.yaml), for loopback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDMS_", "DATABASE_URL"))}
    env.update(
        DATABASE_URL=database_url,
        CDMS_READ_URLS=read_urls,
        CDMS_DB_PREPARE="off",
        CDMS_DB_POOL_SIZE="4",
        CDMS_DB_MAX_OVERFLOW="2",
        CDMS_ETL_MODE="off",  # the load under test is the API's, not the pipeline's
        CDMS_TRAIN_ON_START="0",
        CDMS_DEMO_OPEN="1",  # anonymous = admin: keys are tests/scale/test_two_processes.py's
        CDMS_APIKEY_CACHE_SECONDS="1",
    )
    env.update(extra)
    return env


@dataclass
class Topology:
    """etcd, two Patroni nodes (synchronous), HAProxy, PgBouncer, two ``cdms serve``."""

    root: Path
    bindir: Path
    etcd: Etcd = field(init=False)
    nodes: list[PatroniNode] = field(default_factory=list)
    haproxy: HAProxy | None = None
    bouncer: Bouncer | None = None
    apis: list[Api] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.etcd = Etcd(self.root / "etcd")
        self.apis = [Api(self.root / f"api{i}") for i in (1, 2)]  # HAProxy's api1, api2

    def start_cluster(self) -> None:
        """etcd and two Patroni nodes; returns once pg1 leads and pg2 is its sync standby."""
        own(self.root)  # PostgreSQL (as postgres) reaches its folders through it
        self.etcd.start()
        scope = f"cdms-{secrets.token_hex(3)}"
        for i in (1, 2):
            node = PatroniNode(f"pg{i}", self.root / f"pg{i}", self.bindir, self.etcd, scope)
            self.nodes.append(node)
        self.nodes[0].start()
        wait_for(lambda: self.nodes[0].endpoint("primary"), timeout=25)
        self.nodes[1].start()  # bootstraps from the leader (pg_basebackup)
        wait_for(lambda: self.nodes[1].endpoint("sync"), timeout=25)

    def leader(self) -> PatroniNode | None:
        return next((n for n in self.nodes if n.endpoint("primary")), None)

    def start_proxies(self) -> None:
        self.haproxy = HAProxy(self.root / "haproxy", self.nodes, [a.port for a in self.apis])
        self.haproxy.start()
        # HAProxy starts with every server up until its checks say otherwise
        leader = self.leader()
        assert leader is not None
        settled = {f"{kind}/{n.name}": "UP" if (kind == "primary") == (n is leader) else "DOWN"
                   for kind in ("primary", "replicas") for n in self.nodes}  # fmt: skip
        wait_for(lambda: self.haproxy_states(settled.keys()) == settled, timeout=30)
        self.bouncer = Bouncer(
            self.haproxy.replicas, self.root / "pgbouncer", database="cdms_ro",
            dbname="cdms", user="cdms", password=PASSWORD, pool_size=8,
        )  # fmt: skip
        self.bouncer.start()

    def haproxy_states(self, names: Any) -> dict[str, str]:
        """HAProxy's view of ``names`` (``backend/server``): UP, DOWN, or a transition
        (``UP 1/2``: one failed check of the two that take it down)."""
        assert self.haproxy is not None
        try:
            states = self.haproxy.server_states()
        except httpx.HTTPError:
            return {}
        return {n: states.get(n, "?") for n in names}

    def write_url(self, user: str = "cdms") -> str:
        """The primary through HAProxy (deploy: ``haproxy:5000``)."""
        assert self.haproxy is not None
        return f"postgresql://{user}:{PASSWORD}@127.0.0.1:{self.haproxy.primary}/cdms"

    def read_url(self) -> str:
        """The replicas through PgBouncer (deploy: ``pgbouncer:6432/cdms_ro``)."""
        assert self.bouncer is not None
        return self.bouncer.url()

    def start_apis(self, env: dict[str, str]) -> None:
        for api in self.apis:
            api.start(env)
        for api in self.apis:
            api.wait_ready()

    def close(self) -> None:
        """Everything, each process group killed; then the folder. HAProxy first: the
        connections it keeps open to the API processes would hold up their shutdown."""
        if self.haproxy is not None:
            self.haproxy.close()
        for api in self.apis:
            api.close()
        if self.bouncer is not None:
            self.bouncer.stop()
        for node in self.nodes:
            node.crash()
        self.etcd.close()
        shutil.rmtree(self.root, ignore_errors=True)


def until(predicate: Callable[[], bool], timeout: float, every: float = 0.2) -> float:
    """Seconds until ``predicate()`` holds (AssertionError after ``timeout``)."""
    started = time.monotonic()
    wait_for(predicate, timeout=timeout, every=every)
    return time.monotonic() - started
