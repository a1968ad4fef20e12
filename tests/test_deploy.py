"""The container files, checked for the structure they promise (no Docker engine runs in
CI): the Dockerfile installs the locked dependencies before copying the sources, declares
its volume and takes the health check's port from CDMS_PORT; deploy/compose.yaml starts
PostgreSQL and cdms with one command."""

from __future__ import annotations

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
