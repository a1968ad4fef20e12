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


PAGE = """{ customers(first: 5, orderBy: [{id: ASC}]) { edges { node { id
          expectedOrderValue { value } churnRisk { label probability } } } }
        orders(first: 4, orderBy: [{id: ASC}]) { edges { node { id
          predictedStatus { label probability } predictedTotal { value } } } } }"""


def _counts(engine: Engine, actor: str) -> dict[tuple[str, str], int]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT entity, model, count(*) FROM ml.prediction_log WHERE actor = :a"
                " GROUP BY 1, 2"
            ),
            {"a": actor},
        ).all()
    return {(str(e), str(m)): int(n) for e, m, n in rows}


def test_reading_the_same_page_again_logs_nothing_more(
    ml_engine: Engine, trained: dict[str, TrainedModel]
) -> None:
    """A re-read of the same predictions adds nothing (finding 4: a page of 500 customers'
    expectedOrderValue, read in a loop, wrote 500 rows a request); each distinct prediction
    served to a principal is still there once: every object of the page by every model,
    each distinct what-if input, and the same page read by another principal."""
    actor, other = (f"jwt:reread-{uuid.uuid4().hex[:8]}" for _ in range(2))
    once = {
        ("customer", "order_value"): 5,
        ("customer", "churn_risk"): 5,
        ("order", "order_status"): 4,
        ("order", "order_value"): 4,
    }
    with unstored(ml_engine):  # every prediction of the page computed on request
        first = _execute(ml_engine, actor, PAGE, {})
        _execute(ml_engine, actor, PAGE, {})  # still buffered: the process has seen it
        log_for(ml_engine).flush()
        assert _counts(ml_engine, actor) == once
        for _ in range(3):  # read again after the flush
            assert _execute(ml_engine, actor, PAGE, {}) == first
        log_for(ml_engine).flush()
        assert _counts(ml_engine, actor) == once
        _execute(ml_engine, other, PAGE, {})
        log_for(ml_engine).flush()
        assert _counts(ml_engine, other) == once
    for _ in range(3):
        _execute(ml_engine, actor, WHAT_IF, {"input": ORDER_INPUT})
    _execute(ml_engine, actor, WHAT_IF, {"input": {**ORDER_INPUT, "itemCount": 3}})
    log_for(ml_engine).flush()
    assert _counts(ml_engine, actor) == {**once, ("what_if", "order_status"): 2}


def test_an_input_rows_digest_is_its_own_whatever_the_batch() -> None:
    """The log's key (``features_hash``): one row's digest is the same alone or in a batch
    of others, and any feature that differs (a missing number, where a category's text
    splits) gives another."""
    import numpy as np

    from ml.batch import digests
    from ml.specs import ORDER_VALUE, FeatureKind

    def inputs(rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            f.name: np.array(
                [[r[f.name]] for r in rows],
                dtype=object if f.kind is FeatureKind.CATEGORY else np.float32,
            )
            for f in ORDER_VALUE.features
        }

    base = {f.name: ("x" if f.kind is FeatureKind.CATEGORY else 1.0) for f in ORDER_VALUE.features}
    variants = [
        base,
        {**base, "prior_avg_value": float("nan")},
        {**base, "segment": "xx", "age_band": ""},
        {**base, "segment": "", "age_band": "xx"},
        {**base, "month": 2.0},
    ]
    together = digests(ORDER_VALUE, inputs(variants))
    alone = [digests(ORDER_VALUE, inputs([v]))[0] for v in variants]
    assert together == alone
    assert len(set(together)) == len(variants)
    assert all(len(d) == 16 for d in together)


def _row(actor: str, entity_id: int = 1, at: dt.datetime | None = None) -> prediction_log.Row:
    """A row of the order_value model for order ``entity_id`` served to ``actor``."""
    stamp = at or dt.datetime.now(dt.UTC)
    digest = bytes(16)
    return ("order_value", 1, "order", entity_id, None, None, 1.0, actor, stamp, digest)


def test_a_full_buffer_drops_and_counts_and_close_flushes_the_rest(ml_engine: Engine) -> None:
    url = to_libpq_url(ml_engine.url.render_as_string(hide_password=False))
    log = PredictionLog(url, capacity=3, batch=1_000, interval=60)
    actor = f"test:{uuid.uuid4().hex[:8]}"
    log.add([_row(actor, 1), _row(actor, 2)])
    log.add([_row(actor, 3), _row(actor, 4), _row(actor, 5)])
    assert (log.pending(), log.dropped) == (3, 2)
    assert _logged(ml_engine, actor) == []
    log.add([_row(actor, 1), _row(actor, 2)])  # queued already: not again, not dropped
    assert (log.pending(), log.dropped, log.repeated) == (3, 2, 2)
    log.close()  # a server's shutdown: what is buffered is written
    assert (log.pending(), log.written) == (0, 3)
    assert [r.entity_id for r in _logged(ml_engine, actor)] == [1, 2, 3]


def test_a_row_the_log_holds_is_not_written_again_by_another_process(ml_engine: Engine) -> None:
    """The unique key (0026), not only a process's memory: a second log (another API
    process, or this one restarted) writes nothing for rows the table holds; a row that
    differs by version, input digest, object or principal is a row of its own."""
    url = to_libpq_url(ml_engine.url.render_as_string(hide_password=False))
    actor = f"test:{uuid.uuid4().hex[:8]}"
    first, second = (PredictionLog(url, interval=60) for _ in range(2))
    row = _row(actor)
    first.add([row])
    assert first.flush() == 1
    second.add([row, _row(actor, 2)])
    assert second.flush() == 1
    assert (second.written, second.known) == (1, 1)
    new_version = (*row[:1], 2, *row[2:])
    new_input = (*row[:9], b"\x01" * 16)
    other = (*row[:7], f"{actor}-other", *row[8:])
    second.add([new_version, new_input, other])  # type: ignore[list-item]
    assert second.flush() == 3
    first.close()
    second.close()
    assert len(_logged(ml_engine, actor)) == 4


def test_a_principals_what_ifs_past_the_hours_budget_are_counted_not_logged() -> None:
    """What-if inputs are the client's: distinct ones cost it only bytes, so each principal
    logs at most ``what_if_budget`` an hour (per process); objects' predictions are bounded
    by the data and not budgeted."""
    log = PredictionLog("postgresql://nobody@127.0.0.1:1/nothing", interval=60, what_if_budget=2)
    now = dt.datetime.now(dt.UTC)

    def what_if(actor: str, n: int) -> prediction_log.Row:
        return ("order_status", 1, "what_if", None, "delivered", 0.9, None, actor, now,
                n.to_bytes(16, "big"))  # fmt: skip

    log.add([what_if("a", n) for n in range(5)] + [what_if("b", 0)])
    log.add([_row("a", n) for n in range(5)])
    assert (log.pending(), log.over_budget) == (2 + 1 + 5, 3)
    log.close()


def test_the_budget_warning_writes_the_actor_escaped(caplog: pytest.LogCaptureFixture) -> None:
    """The actor is the client's (a JWT's ``sub``): written raw, a line break in it forged a
    log line and an escape sequence ran on the terminal of whoever watched the server
    (hostile probe 22, L3)."""
    log = PredictionLog("postgresql://nobody@127.0.0.1:1/nothing", interval=60, what_if_budget=1)
    actor = "jwt:ops\nINFO: forged\x1b]0;owned\x07\x1b[2J\u202e"
    row = ("order_status", 1, "what_if", None, "delivered", 0.9, None, actor,
           dt.datetime.now(dt.UTC), bytes(16))  # fmt: skip
    with caplog.at_level("WARNING", logger=prediction_log.log.name):
        log.add([row])
    log.close()
    [line] = [r.getMessage() for r in caplog.records if "what-if" in r.getMessage()]
    assert line.isprintable(), line
    assert "jwt:ops\\nINFO: forged\\x1b" in line, line


def test_a_flush_that_fails_drops_its_batch_and_counts_it() -> None:
    log = PredictionLog("postgresql://nobody@127.0.0.1:1/nothing", interval=60)
    log.add([_row("x")])
    assert log.flush() == 0
    assert (log.dropped, log.pending()) == (1, 0)
    log.add([_row("x")])  # lost, so forgotten: served again, it is queued again
    assert (log.pending(), log.repeated) == (1, 0)
    log.close()


def test_retention_deletes_old_rows_in_batches_and_keeps_recent_ones(
    ml_engine: Engine, monkeypatch: Any
) -> None:
    url = to_libpq_url(ml_engine.url.render_as_string(hide_password=False))
    actor = f"test:{uuid.uuid4().hex[:8]}"
    now = dt.datetime.now(dt.UTC)
    log = PredictionLog(url, interval=60, retention_days=30, prune_every=3600)
    old = [_row(actor, i, now - dt.timedelta(days=31)) for i in range(7)]
    kept = [("order_status", 1, "order", 9, "delivered", 0.9, None, actor,
             now - dt.timedelta(days=29), bytes(16))]  # fmt: skip
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
    log.add([_row(actor, 1, stamp)])
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
    log.add([_row(actor)])
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
