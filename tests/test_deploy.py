"""The container files, checked for the structure they promise (no Docker engine runs in
CI): the Dockerfile installs the locked dependencies before copying the sources, declares
its volume and takes the health check's port from CDMS_PORT; deploy/compose.yaml starts
PostgreSQL and cdms with one command; deploy/compose.ha.yaml is safe by default (no
default password, pg_hba admitting its internal network only, no database port
published, its control planes behind passwords)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def test_dockerfile_installs_the_lock_before_the_sources() -> None:
    steps = _instructions()
    index = {i: (op, arg) for i, (op, arg) in enumerate(steps)}
    lock_copy = next(i for i, (op, arg) in index.items() if op == "COPY" and "uv.lock" in arg)
    deps = next(i for i, (op, arg) in index.items() if op == "RUN" and "uv sync" in arg)
    first_source = next(i for i, (op, arg) in index.items() if op == "COPY" and "api" in arg)
    assert lock_copy < deps < first_source
    assert "--locked" in index[deps][1] and "--no-install-project" in index[deps][1]
    copied = [arg.split()[0] for op, arg in steps if op == "COPY"]
    assert "." not in copied  # only what the package needs, never the whole context


def test_dockerfile_volume_port_and_production_settings() -> None:
    steps = _instructions()
    ops = {op for op, _ in steps}
    assert {"VOLUME", "HEALTHCHECK", "USER", "CMD"} <= ops
    volume = next(arg for op, arg in steps if op == "VOLUME")
    env = " ".join(arg for op, arg in steps if op == "ENV")
    data_dir = re.search(r"CDMS_DATA_DIR=(\S+)", env)
    assert data_dir and data_dir.group(1) in volume
    assert "CDMS_ENV=production" in env
    health = next(arg for op, arg in steps if op == "HEALTHCHECK")
    assert "os.environ.get('CDMS_PORT'" in health and ":8000/" not in health
    assert "--no-seed-demo" in next(arg for op, arg in steps if op == "CMD")
    # liveness on /healthz (200 while the warehouse loads), never /readyz, with a start period
    # covering the migrations before listening (failures in it do not count)
    assert "/healthz" in health and "/readyz" not in health
    start_period = re.search(r"--start-period=(\d+)s", health)
    assert start_period and int(start_period.group(1)) >= 30


def test_compose_starts_postgresql_and_cdms() -> None:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"db", "cdms", "train"}
    train = services["train"]  # the training job: not started by `up`
    assert train["profiles"] == ["jobs"] and "cdms ml train" in " ".join(train["command"])
    assert train["environment"]["CDMS_ENV"] == "production"
    db, app = services["db"], services["cdms"]
    assert db["image"].startswith("postgres:") and "healthcheck" in db
    assert app["depends_on"]["db"]["condition"] == "service_healthy"
    assert (ROOT / "deploy" / app["build"]["context"] / app["build"]["dockerfile"]).is_file()
    url = app["environment"]["DATABASE_URL"]
    assert url.startswith("postgresql://") and "@db:5432/" in url
    assert app["environment"]["CDMS_ENV"] == "production"
    named = set(compose["volumes"])
    for service in services.values():
        for mount in service.get("volumes", []):
            assert mount.split(":")[0] in named, mount
    assert any(p.endswith(":8000") for p in app["ports"])


def test_ha_compose_has_patroni_pgbouncer_two_apis_and_haproxy() -> None:
    ha = yaml.safe_load((ROOT / "deploy" / "compose.ha.yaml").read_text())
    services = ha["services"]
    assert {"etcd", "pg1", "pg2", "haproxy", "pgbouncer", "api1", "api2"} <= set(services)
    for api in ("api1", "api2"):
        env = services[api]["environment"]
        assert "haproxy:5000" in env["DATABASE_URL"]  # a session to the primary
        assert "pgbouncer:6432" in env["CDMS_READ_URLS"]
        assert env["CDMS_DB_PREPARE"] == "off"
        # clients' own addresses from HAProxy's X-Forwarded-For (else every per-address
        # bound holds all users as one: the second hostile review), which is safe only
        # while the API publishes no port of its own
        assert env["FORWARDED_ALLOW_IPS"] and "ports" not in services[api]
    # ... and only while HAProxy drops the client's own X-Forwarded-For before adding its
    # line (uvicorn trusting "*" takes the leftmost: a client chose its address; the third
    # hostile review). tests/scale/test_ha.py sends one through the real HAProxy.
    api_frontend = (ROOT / "deploy" / "ha" / "haproxy.cfg").read_text().split("frontend api")[1]
    api_frontend = api_frontend.split("backend api")[0]
    drop = api_frontend.index("http-request del-header X-Forwarded-For")
    assert drop < api_frontend.index("option forwardfor")
    train = services["train"]  # the training job (the APIs run in production: no training)
    assert train["profiles"] == ["jobs"] and "cdms ml train" in " ".join(train["command"])
    assert "haproxy:5000" in train["environment"]["DATABASE_URL"]  # the primary
    patroni = yaml.safe_load((ROOT / "deploy" / "ha" / "patroni.yml").read_text())
    assert patroni["bootstrap"]["dcs"]["synchronous_mode"] is True
    haproxy = (ROOT / "deploy" / "ha" / "haproxy.cfg").read_text()
    for needle in ("GET /primary", "GET /replica", "GET /readyz", "server api1", "server api2"):
        assert needle in haproxy
    pgbouncer = (ROOT / "deploy" / "ha" / "pgbouncer.ini").read_text()
    assert "pool_mode = transaction" in pgbouncer
    for name in ("patroni.Dockerfile", "pgbouncer.Dockerfile", "post-init.sh"):
        assert (ROOT / "deploy" / "ha" / name).is_file()


# --- the HA deployment is safe by default (hostile probe 13, M5) ---------------------------

HA_DIR = ROOT / "deploy" / "ha"
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z0-9_]+)(?P<op>:?[-?])?[^}]*\}")
REQUIRED = re.compile(r"\$\{(?P<name>[A-Z0-9_]+):\?[^}]+\}")


def _ha() -> dict[str, Any]:
    ha: dict[str, Any] = yaml.safe_load((ROOT / "deploy" / "compose.ha.yaml").read_text())
    return ha


def _cluster_network(ha: dict[str, Any]) -> tuple[str, ipaddress.IPv4Network]:
    """The network the databases live on: internal, with a fixed subnet."""
    found = [
        (name, net)
        for name, net in ha.get("networks", {}).items()
        if net and net.get("internal") is True
    ]
    assert len(found) == 1, "one internal network for etcd, Patroni and PostgreSQL"
    name, net = found[0]
    subnet = ipaddress.ip_network(net["ipam"]["config"][0]["subnet"])
    assert isinstance(subnet, ipaddress.IPv4Network) and subnet.is_private
    return name, subnet


def _networks(service: dict[str, Any]) -> set[str]:
    nets = service.get("networks", ["default"])
    return set(nets if isinstance(nets, list) else nets.keys())


def test_the_ha_deployment_takes_every_password_from_the_operator() -> None:
    """No default password anywhere (`${X:-postgres}` started a cluster whose superuser
    password everyone knew): compose refuses to start while one is unset or empty, and
    deploy/.env.example lists exactly those, with no value."""
    text = (ROOT / "deploy" / "compose.ha.yaml").read_text()
    for m in INTERPOLATION.finditer(text):
        if "PASSWORD" in m["name"]:
            assert m["op"] == ":?", f"{m[0]}: a password must fail when unset or empty"
    required = {m["name"] for m in REQUIRED.finditer(text)}
    assert {
        "CDMS_PG_SUPERUSER_PASSWORD", "CDMS_PG_REPLICATION_PASSWORD", "CDMS_PG_REWIND_PASSWORD",
        "CDMS_DB_PASSWORD", "CDMS_PATRONI_API_PASSWORD", "CDMS_HAPROXY_STATS_PASSWORD",
    } <= required  # fmt: skip
    for name, service in _ha()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            value = str(value)
            if "PASSWORD" in key:
                assert REQUIRED.fullmatch(value), f"{name}.{key}: {value}"
            for userinfo in re.findall(r"://[^/@\s]+@", value):  # a URL's user:password@
                assert REQUIRED.search(userinfo), f"{name}.{key}: {value}"
    for script in ("post-init.sh", "pgbouncer-entry.sh"):
        body = (HA_DIR / script).read_text()
        assert not re.search(r"\$\{[A-Z_]*PASSWORD:?-", body), f"{script}: a default password"
    patroni = (HA_DIR / "patroni.yml").read_text()
    assert not re.search(r"^\s*password\s*:", patroni, re.M), "passwords come from the env"
    # the example: every required variable, none with a value (a copy left unedited fails)
    example = (ROOT / "deploy" / ".env.example").read_text()
    listed = dict(re.findall(r"^([A-Z0-9_]+)=(.*)$", example, re.M))
    assert set(listed) == required
    assert all(v.strip() == "" for v in listed.values()), listed
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "deploy/.env" in ignored or ".env" in ignored


def _hba_rules() -> list[list[str]]:
    patroni = yaml.safe_load((HA_DIR / "patroni.yml").read_text())
    return [str(line).split() for line in patroni["postgresql"]["pg_hba"]]


def _hba_method(rules: list[list[str]], kind: str, db: str, user: str, addr: str) -> str:
    """The method of the first pg_hba line matching a connection (as PostgreSQL picks it);
    ``reject`` when none does. ``db`` is ``replication`` for a physical replication one."""
    for rule in rules:
        if rule[0] != kind and not (kind == "host" and rule[0] in ("hostssl", "hostnossl")):
            continue
        dbs, users = rule[1].split(","), rule[2].split(",")
        if db not in dbs and not ("all" in dbs and db != "replication"):
            continue
        if user not in users and "all" not in users:
            continue
        if kind == "local":
            return rule[3]
        where = rule[3]
        if where != "all" and ipaddress.ip_address(addr) not in ipaddress.ip_network(where):
            continue
        return rule[4]
    return "reject"


def test_the_ha_databases_admit_only_the_cluster_network() -> None:
    """pg_hba admitted `0.0.0.0/0` (superuser included) and HAProxy published 5000/5001 on
    the Docker host: any local user logged in as postgres or took a pg_basebackup. Now the
    databases live on an internal network with a fixed subnet, and pg_hba admits only it,
    with scram-sha-256; the superuser never over the network."""
    ha = _ha()
    services = ha["services"]
    cluster, subnet = _cluster_network(ha)
    for name in ("etcd", "pg1", "pg2"):
        assert _networks(services[name]) == {cluster}, name
    assert cluster in _networks(services["haproxy"])  # the one way in: ports 5000/5001
    for name in ("pgbouncer", "api1", "api2", "train"):
        assert cluster not in _networks(services[name]), name
    rules = _hba_rules()
    for rule in rules:
        assert "trust" not in rule and "0.0.0.0/0" not in rule and "::/0" not in rule, rule
        if rule[0].startswith("host") and rule[-1] != "reject":
            assert rule[-1] == "scram-sha-256", rule
            assert ipaddress.ip_network(rule[3]).subnet_of(subnet), rule
    inside = str(subnet.network_address + 10)
    env = services["pg1"]["environment"]
    superuser, replicator = env["PATRONI_SUPERUSER_USERNAME"], env["PATRONI_REPLICATION_USERNAME"]
    rewind = env["PATRONI_REWIND_USERNAME"]
    for db in ("cdms", "postgres", "template1", "replication"):
        assert _hba_method(rules, "host", db, superuser, inside) == "reject", db
    assert _hba_method(rules, "host", "replication", replicator, inside) == "scram-sha-256"
    assert _hba_method(rules, "host", "postgres", rewind, inside) == "scram-sha-256"  # pg_rewind
    assert _hba_method(rules, "host", "cdms", "cdms", inside) == "scram-sha-256"
    for outside in ("172.17.0.1", "192.168.1.20", "10.0.0.5", "127.0.0.1"):
        if ipaddress.ip_address(outside) in subnet:
            continue
        for db, user in (("cdms", "cdms"), ("replication", replicator), ("postgres", rewind)):
            assert _hba_method(rules, "host", db, user, outside) == "reject", (outside, user)
    # Patroni's own connections: the Unix socket (peer: only the OS user postgres)
    assert _hba_method(rules, "local", "postgres", superuser, "") == "peer"
    patroni = yaml.safe_load((HA_DIR / "patroni.yml").read_text())["postgresql"]
    assert patroni["use_unix_socket"] is True and patroni["use_unix_socket_repl"] is True


def test_the_ha_deployment_publishes_no_database_port() -> None:
    """Only HAProxy publishes, on the host's loopback, the API (8000) and its statistics
    (8404, password); PostgreSQL through 5000/5001 only with the documented override."""
    services = _ha()["services"]
    for name, service in services.items():
        if name != "haproxy":
            assert "ports" not in service, name
    published = services["haproxy"]["ports"]
    assert sorted(published) == ["127.0.0.1:8000:8000", "127.0.0.1:8404:8404"]
    override = yaml.safe_load((ROOT / "deploy" / "compose.ha.db-ports.yaml").read_text())
    assert set(override["services"]) == {"haproxy"}
    assert sorted(override["services"]["haproxy"]["ports"]) == [
        "127.0.0.1:5000:5000",
        "127.0.0.1:5001:5001",
    ]
    assert "compose.ha.db-ports.yaml" in (ROOT / "deploy" / "README.md").read_text()


def test_the_ha_control_planes_need_credentials() -> None:
    """Patroni's REST API (switchover, restart, PATCH /config: archive_command runs
    commands) answered anyone, etcd too, and HAProxy's statistics had no password."""
    ha = _ha()
    services = ha["services"]
    cluster, _ = _cluster_network(ha)
    for name in ("pg1", "pg2"):
        env = services[name]["environment"]
        assert env["PATRONI_RESTAPI_USERNAME"]
        assert REQUIRED.fullmatch(str(env["PATRONI_RESTAPI_PASSWORD"]))
    assert "ports" not in services["etcd"] and _networks(services["etcd"]) == {cluster}
    cfg = (HA_DIR / "haproxy.cfg").read_text()
    stats = cfg.split("listen stats")[1].split("\nlisten ")[0]
    assert re.search(r'^\s*stats auth "[a-z]+:\$\{CDMS_HAPROXY_STATS_PASSWORD\}"', stats, re.M)
    assert "stats admin" not in stats  # read-only
    # HAProxy itself refuses to start without the password (an empty one would be a login)
    assert ".if !defined(CDMS_HAPROXY_STATS_PASSWORD)" in cfg and ".alert" in cfg
    haproxy_env = services["haproxy"]["environment"]
    assert REQUIRED.fullmatch(str(haproxy_env["CDMS_HAPROXY_STATS_PASSWORD"]))


def test_the_ha_etcd_takes_credentials() -> None:
    """etcd had no authentication: anything on the cluster network could write Patroni's
    leader key (and so pick the primary). A one-off job (ha/etcd-init.sh, in the Patroni
    image) makes a root user and a patroni user limited to /service/ and turns
    authentication on before any Patroni starts; the Patronis log in as patroni."""
    services = _ha()["services"]
    init = services["etcd-init"]
    assert init["restart"] == "no" and _networks(init) == _networks(services["etcd"])
    assert init["entrypoint"] == ["/usr/local/bin/cdms-etcd-init"]
    assert init["environment"]["ETCD_ENDPOINTS"] == "http://etcd:2379"
    for name in ("CDMS_ETCD_ROOT_PASSWORD", "CDMS_ETCD_PATRONI_PASSWORD"):
        assert REQUIRED.fullmatch(str(init["environment"][name])), name
    for name in ("pg1", "pg2"):
        service = services[name]
        assert service["depends_on"]["etcd-init"] == {"condition": "service_completed_successfully"}
        env = service["environment"]
        assert env["PATRONI_ETCD3_USERNAME"] == "patroni"
        assert REQUIRED.fullmatch(str(env["PATRONI_ETCD3_PASSWORD"]))
        assert "CDMS_ETCD_PATRONI_PASSWORD" in str(env["PATRONI_ETCD3_PASSWORD"])
    dockerfile = (HA_DIR / "patroni.Dockerfile").read_text()
    assert "etcd-client" in dockerfile
    assert "etcd-init.sh /usr/local/bin/cdms-etcd-init" in dockerfile
    script = (HA_DIR / "etcd-init.sh").read_text()
    assert "auth enable" in script and "--prefix=true readwrite /service/" in script
    assert "$CDMS_ETCD_ROOT_PASSWORD" in script and ":$CDMS_ETCD" not in script  # not in argv
