"""The prediction log: every prediction served reaches ml.prediction_log, in batches written
off the request path; a full buffer drops (and counts) rather than blocks."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.config import to_libpq_url
from db.engine import dispose_engine, drop_database, ensure_database, with_database
from db.errors import ConfigError
from ml import prediction_log, stored
from ml.prediction_log import PredictionLog, log_for
from ml.train import TrainedModel
from tests.cli import cli_environment, run_cdms
from tests.ml.conftest import unstored
from tests.ml.test_graphql import ORDER_INPUT, WHAT_IF


def _execute(engine: Engine, actor: str, query: str, variables: dict[str, Any]) -> Any:
    """The operation as served, as a service principal whose actor is ``actor``."""
    from api.app import create_app
    from api.security import SecurityConfig
    from tests.api.conftest import TestClient, options
    from tests.security.conftest import SECRET, bearer, token

    app = create_app(engine, SecurityConfig(jwt_secret=SECRET), options())
    with TestClient(app) as client:
        resp = client.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers=bearer(token("service", sub=actor.removeprefix("jwt:"))),
        )
    body = resp.json()
    assert not body.get("errors"), body["errors"]
    return body["data"]


def _logged(engine: Engine, actor: str) -> list[sa.Row[Any]]:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT model, model_version, entity, entity_id, label, probability, value,"
                " requested_at FROM ml.prediction_log WHERE actor = :a"
                " ORDER BY entity, model, entity_id"
            ),
            {"a": actor},
        ).all()


def test_predictions_served_arrive_in_the_log(
    ml_engine: Engine, trained: dict[str, TrainedModel]
) -> None:
    actor = f"jwt:logged-{uuid.uuid4().hex[:8]}"
    started = dt.datetime.now(dt.UTC)
    query = """{ orders(first: 4, orderBy: [{id: ASC}]) { edges { node { id
             predictedStatus { label probability model { version } }
             predictedTotal { value } } } } }"""
    # every prediction stored (whatever an earlier test activated or deleted), so that
    # the first read reads them: stored predictions are not logged again
    stored.refresh(ml_engine)
    _execute(ml_engine, actor, query, {})
    with unstored(ml_engine):  # computed on request: logged
        data = _execute(ml_engine, actor, query, {})
    what_if = _execute(ml_engine, actor, WHAT_IF, {"input": ORDER_INPUT})
    log_for(ml_engine).flush()
    rows = _logged(ml_engine, actor)
    nodes = {int(e["node"]["id"]): e["node"] for e in data["orders"]["edges"]}
    status = [r for r in rows if r.entity == "order" and r.model == "order_status"]
    value = [r for r in rows if r.entity == "order" and r.model == "order_value"]
    assert [r.entity_id for r in status] == [r.entity_id for r in value] == sorted(nodes)
    for r in status:
        p = nodes[r.entity_id]["predictedStatus"]
        assert (r.label, r.probability, r.value) == (p["label"], p["probability"], None)
        assert r.model_version == p["model"]["version"]
    for r in value:
        assert (r.label, r.value) == (None, nodes[r.entity_id]["predictedTotal"]["value"])
    [w] = [r for r in rows if r.entity == "what_if"]
    assert (w.model, w.entity_id) == ("order_status", None)
    assert w.label == what_if["predictOrderStatus"]["label"]
    assert all(started <= r.requested_at <= dt.datetime.now(dt.UTC) for r in rows)


def test_a_full_buffer_drops_and_counts_and_close_flushes_the_rest(ml_engine: Engine) -> None:
    url = to_libpq_url(ml_engine.url.render_as_string(hide_password=False))
    log = PredictionLog(url, capacity=3, batch=1_000, interval=60)
    actor = f"test:{uuid.uuid4().hex[:8]}"
    now = dt.datetime.now(dt.UTC)
    row = ("order_value", 1, "order", 1, None, None, 12.5, actor, now)
    log.add([row, row])
    log.add([row, row, row])
    assert (log.pending(), log.dropped) == (3, 2)
    assert _logged(ml_engine, actor) == []
    log.close()  # a server's shutdown: what is buffered is written
    assert (log.pending(), log.written) == (0, 3)
    assert len(_logged(ml_engine, actor)) == 3


def test_a_flush_that_fails_drops_its_batch_and_counts_it() -> None:
    log = PredictionLog("postgresql://nobody@127.0.0.1:1/nothing", interval=60)
    log.add([("order_value", 1, "order", 1, None, None, 1.0, "x", dt.datetime.now(dt.UTC))])
    assert log.flush() == 0
    assert (log.dropped, log.pending()) == (1, 0)
    log.close()


def test_retention_deletes_old_rows_in_batches_and_keeps_recent_ones(
    ml_engine: Engine, monkeypatch: Any
) -> None:
    url = to_libpq_url(ml_engine.url.render_as_string(hide_password=False))
    actor = f"test:{uuid.uuid4().hex[:8]}"
    now = dt.datetime.now(dt.UTC)
    log = PredictionLog(url, interval=60, retention_days=30, prune_every=3600)
    old = [("order_value", 1, "order", i, None, None, 1.0, actor, now - dt.timedelta(days=31))
           for i in range(7)]  # fmt: skip
    kept = [("order_status", 1, "order", 9, "delivered", 0.9, None, actor,
             now - dt.timedelta(days=29))]  # fmt: skip
    log.add(old + kept)
    assert log.flush() == 8
    monkeypatch.setattr(prediction_log, "PRUNE_BATCH", 3)  # several batches of one model
    assert log.prune_now() >= 7  # (and any other row older than 30 days)
    left = _logged(ml_engine, actor)
    assert len(left) == 1 and left[0].model == "order_status"
    assert log.pruned >= 7
    keep_all = PredictionLog(url, interval=60, retention_days=0)
    assert keep_all.prune_now() == 0
    log.close()
    keep_all.close()


def test_retention_setting_is_validated(monkeypatch: Any) -> None:
    monkeypatch.setenv("CDMS_PREDICTION_LOG_DAYS", "30")
    assert prediction_log.retention_days() == 30
    monkeypatch.delenv("CDMS_PREDICTION_LOG_DAYS")
    assert prediction_log.retention_days() == 90
    monkeypatch.setenv("CDMS_PREDICTION_LOG_DAYS", "36500")  # a century: the most
    assert prediction_log.retention_days() == 36500
    for bad in ("-1", "a week", "36501", "9999999"):
        monkeypatch.setenv("CDMS_PREDICTION_LOG_DAYS", bad)
        with pytest.raises(ConfigError):
            prediction_log.retention_days()


def test_prune_log_command(ml_engine: Engine, tmp_path: Path) -> None:
    url = to_libpq_url(ml_engine.url.render_as_string(hide_password=False))
    actor = f"test:{uuid.uuid4().hex[:8]}"
    log = PredictionLog(url, interval=60, retention_days=0)
    stamp = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    log.add([("order_value", 1, "order", 1, None, None, 1.0, actor, stamp)])
    log.close()
    done = run_cdms(cli_environment(url, tmp_path), "ml", "prune-log", "--days", "365")
    assert done.returncode == 0, done.stderr
    assert "older than 365 days deleted" in done.stdout
    assert _logged(ml_engine, actor) == []
    bad = run_cdms(cli_environment(url, tmp_path), "ml", "prune-log", "--days", "0")
    assert bad.returncode == 2 and bad.stderr.startswith("error[USAGE]: ")


def _one_line(done: Any, code: str, exit_code: int) -> str:
    """The command failed as the CLI promises: ``error[CODE]: …`` alone on stderr, no
    traceback, with ``exit_code``; returns that line."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == exit_code, done.stderr
    assert len(lines) == 1 and lines[0].startswith(f"error[{code}]: "), done.stderr
    return str(lines[0])


@pytest.fixture
def one_logged_row(database_url: str) -> Iterator[None]:
    """A row in the session database's prediction log (the hostile tester's set-up: the
    command only reaches its DELETE when the log holds a model)."""
    url = to_libpq_url(database_url)
    actor = f"test:{uuid.uuid4().hex[:8]}"
    log = PredictionLog(url, interval=60, retention_days=0)
    log.add([("order_value", 1, "order", 1, None, None, 1.0, actor, dt.datetime.now(dt.UTC))])
    log.close()
    yield
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM ml.prediction_log WHERE actor = %s", (actor,))


@pytest.mark.parametrize("days", ["36501", "2147483647", "2147483648", "99999999999999"])
def test_prune_log_refuses_days_past_a_century(
    cli_env: dict[str, str], one_logged_row: None, days: str
) -> None:
    # was: a DatetimeFieldOverflow / UndefinedFunction make_interval(days => bigint) traceback
    line = _one_line(run_cdms(cli_env, "ml", "prune-log", "--days", days), "USAGE", 2)
    assert "36500" in line
    done = run_cdms(cli_env, "ml", "prune-log", "--days", "36500")  # the bound itself works
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("days", ["36501", "9999999"])
def test_prune_log_refuses_a_retention_setting_past_a_century(
    cli_env: dict[str, str], one_logged_row: None, days: str
) -> None:
    done = run_cdms({**cli_env, "CDMS_PREDICTION_LOG_DAYS": days}, "ml", "prune-log")
    line = _one_line(done, "CONFIG", 1)
    assert "CDMS_PREDICTION_LOG_DAYS must be at most 36500" in line


def test_prune_log_on_an_unmigrated_database_is_one_line(admin_url: str, tmp_path: Path) -> None:
    # was: psycopg.errors.UndefinedTable with a full traceback (every other command says
    # error[DATABASE]: relation … does not exist)
    name = f"prune_bare_{uuid.uuid4().hex[:8]}"
    ensure_database(admin_url, name)
    url = with_database(admin_url, name)
    try:
        done = run_cdms(cli_environment(url, tmp_path), "ml", "prune-log", "--days", "30")
        line = _one_line(done, "DATABASE", 1)
        assert 'relation "ml.prediction_log" does not exist' in line
    finally:
        dispose_engine(url)
        drop_database(admin_url, name)
