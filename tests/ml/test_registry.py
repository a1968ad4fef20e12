"""The registry: versions, activation by headline metric, validation, rollback, NOTIFY swap."""

from __future__ import annotations

import copy
import hashlib
import logging
import re
import time
from collections.abc import Callable

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.config import to_libpq_url
from db.engine import make_engine
from db.errors import BadUserInputError, NotFoundError
from ml.errors import InvalidModelError, ModelUnavailableError
from ml.registry import activate, list_versions, register
from ml.serving import ModelStore
from ml.train import TrainedModel


@pytest.fixture
def empty_registry(fresh_database: Callable[[], str]) -> Engine:
    return make_engine(fresh_database())


def _active(engine: Engine, name: str) -> int | None:
    with engine.connect() as conn:
        v = conn.execute(
            sa.text("SELECT version FROM ml.model_version WHERE name = :n AND active"), {"n": name}
        ).scalar()
    return None if v is None else int(v)


def _worse(m: TrainedModel) -> TrainedModel:
    other = copy.copy(m)
    other.metrics = dict(m.metrics)
    metric = m.spec.headline_metric
    value = m.metrics[metric]
    assert value is not None
    other.metrics[metric] = value * (0.9 if m.spec.higher_is_better else 1.1)
    return other


def test_first_version_activates_a_worse_one_does_not_unless_forced(
    empty_registry: Engine, trained: dict[str, TrainedModel]
) -> None:
    m = trained["support_status"]
    first = register(empty_registry, m)
    assert (first.version, first.activated) == (1, True)
    same = register(empty_registry, m)
    assert (same.version, same.activated) == (2, True)  # not worse: equal
    worse = register(empty_registry, _worse(m))
    assert (worse.version, worse.activated) == (3, False)
    assert "worse" in worse.reason and "--force" in worse.reason
    assert _active(empty_registry, "support_status") == 2
    forced = register(empty_registry, _worse(m), force=True)
    assert (forced.version, forced.activated) == (4, True)
    assert _active(empty_registry, "support_status") == 4
    with empty_registry.connect() as conn:
        versions = list_versions(conn, "support_status")
    assert [v.version for v in versions] == [4, 3, 2, 1]
    assert [v.active for v in versions] == [True, False, False, False]
    assert versions[0].sha256 == hashlib.sha256(m.onnx).hexdigest()
    assert versions[0].metrics["macro_f1"] is not None


def test_regressor_headline_is_mae_lower_is_better(
    empty_registry: Engine, trained: dict[str, TrainedModel]
) -> None:
    m = trained["order_value"]
    register(empty_registry, m)
    assert not register(empty_registry, _worse(m)).activated
    better = copy.copy(m)
    better.metrics = {**m.metrics, "mae": m.headline * 0.5}
    assert register(empty_registry, better).activated
    assert _active(empty_registry, "order_value") == 3


def test_rollback_to_an_older_version(
    empty_registry: Engine, trained: dict[str, TrainedModel]
) -> None:
    m = trained["support_status"]
    register(empty_registry, m)
    register(empty_registry, m)
    activate(empty_registry, "support_status", 1)
    assert _active(empty_registry, "support_status") == 1
    with pytest.raises(NotFoundError, match="no model support_status version 9"):
        activate(empty_registry, "support_status", 9)
    with pytest.raises(BadUserInputError, match="unknown model"):
        activate(empty_registry, "nope", 1)
    assert _active(empty_registry, "support_status") == 1


def _insert_raw(engine: Engine, m: TrainedModel, version: int, onnx: bytes, sha: str) -> None:
    import json

    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO ml.model_version (name, version, algorithm, onnx, sha256, features,"
                " classes, metrics, row_count, test_row_count) VALUES (:n, :v, 'x', :o, :s,"
                " CAST(:f AS jsonb), CAST(:c AS jsonb), '{}', 0, 0)"
            ),
            {
                "n": m.spec.name,
                "v": version,
                "o": onnx,
                "s": sha,
                "f": json.dumps([f.as_json() for f in m.spec.features]),
                "c": json.dumps(m.classes),
            },
        )


def test_corrupt_or_mismatched_versions_are_refused_and_the_old_one_stays(
    empty_registry: Engine, trained: dict[str, TrainedModel]
) -> None:
    m = trained["support_status"]
    register(empty_registry, m)
    bad = b"\x08\x07this is not an onnx model"
    _insert_raw(empty_registry, m, 2, bad, hashlib.sha256(bad).hexdigest())
    with pytest.raises(InvalidModelError, match="do not load in onnxruntime"):
        activate(empty_registry, "support_status", 2)
    # the order_status graph has other inputs than support_status expects
    other = trained["order_status"].onnx
    _insert_raw(empty_registry, m, 3, other, hashlib.sha256(other).hexdigest())
    with pytest.raises(InvalidModelError, match="graph inputs"):
        activate(empty_registry, "support_status", 3)
    # right bytes, wrong checksum (e.g. truncated in transit)
    _insert_raw(empty_registry, m, 4, m.onnx, "0" * 64)
    with pytest.raises(InvalidModelError, match="sha256"):
        activate(empty_registry, "support_status", 4)
    assert _active(empty_registry, "support_status") == 1
    # the database refuses a checksum mismatch even from a plain UPDATE
    with (
        pytest.raises(sa.exc.DBAPIError, match="sha256 does not match"),
        empty_registry.begin() as conn,
    ):
        conn.execute(sa.text("SELECT ml.activate_model('support_status', 4)"))
    assert _active(empty_registry, "support_status") == 1


def test_store_swaps_to_a_newly_activated_version_on_notify(
    empty_registry: Engine, trained: dict[str, TrainedModel]
) -> None:
    m = trained["support_status"]
    store = ModelStore(empty_registry)
    store.reload()
    with pytest.raises(ModelUnavailableError, match="no active support_status model"):
        store.get("support_status")
    store.start()
    try:
        register(empty_registry, m)
        _wait(lambda: store.loaded().get("support_status") == 1)
        register(empty_registry, m)
        _wait(lambda: store.loaded().get("support_status") == 2)
        # rollback by plain SQL from another client is heard too
        url = to_libpq_url(empty_registry.url.render_as_string(hide_password=False))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT ml.activate_model('support_status', 1)")
        _wait(lambda: store.loaded().get("support_status") == 1)
        assert store.swaps >= 3
        assert store.get("support_status").version == 1
    finally:
        store.stop()


def test_a_forged_notification_does_not_stop_the_listener(
    empty_registry: Engine, trained: dict[str, TrainedModel]
) -> None:
    """Any role may NOTIFY (a BI analyst's included): JSON nested too deep, not an object, or
    an unknown model must be skipped, and the next genuine activation still heard."""
    store = ModelStore(empty_registry)
    store.start()
    try:
        url = to_libpq_url(empty_registry.url.render_as_string(hide_password=False))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET ROLE cdms_customer")
            for payload in ("[" * 3000 + "]" * 3000, "null", "[1]", '{"name": "bogus"}', "x"):
                conn.execute("SELECT pg_notify('cdms_model_activated', %s)", (payload,))
        register(empty_registry, trained["support_status"])
        _wait(lambda: store.loaded().get("support_status") == 1)
    finally:
        store.stop()


def _wait(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _flood(engine: Engine, payload_sql: str, n: int) -> None:
    """``n`` NOTIFYs on the model channel in one statement, as ``cdms_customer`` (any role
    may: PostgreSQL has no privilege for NOTIFY); ``payload_sql`` is an expression of ``g``
    (distinct payloads: a transaction folds identical ones into one)."""
    url = to_libpq_url(engine.url.render_as_string(hide_password=False))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET ROLE cdms_customer")
        conn.execute(
            f"SELECT count(pg_notify('cdms_model_activated', {payload_sql}))"
            f" FROM generate_series(1, {n}) AS g"
        )


def test_a_flood_of_forged_activations_reloads_nothing_and_delays_no_genuine_one(
    empty_registry: Engine, trained: dict[str, TrainedModel]
) -> None:
    """20,000 forged activations of the loaded model (0.05 s to send) made each process
    reload it 20,000 times (~6 ms each: two minutes of a core). A notification is a hint:
    the process reads which versions are active, reloads only a model whose version it does
    not hold, and what arrives meanwhile makes one more look at most."""
    m = trained["support_status"]
    register(empty_registry, m)
    store = ModelStore(empty_registry)
    store.reload()
    store.start()
    try:
        assert store.loaded() == {"support_status": 1}
        _flood(empty_registry, "json_build_object('name', 'support_status', 'n', g)::text", 20_000)
        register(empty_registry, m)  # a genuine activation right behind the flood
        _wait(lambda: store.loaded().get("support_status") == 2, timeout=3.0)
        assert store.swaps <= 2, store.swaps  # the genuine one (and none forged)
    finally:
        store.stop()


def test_a_flood_of_junk_payloads_is_logged_in_a_few_lines(
    empty_registry: Engine, trained: dict[str, TrainedModel], caplog: pytest.LogCaptureFixture
) -> None:
    """1M junk payloads wrote 51 MB of warnings per process; now a line per interval at
    most, saying how many it stands for."""
    caplog.set_level(logging.INFO, logger="cdms.ml")
    store = ModelStore(empty_registry)
    store.start()
    try:
        _flood(empty_registry, "'junk ' || g", 100_000)
        register(empty_registry, trained["support_status"])
        _wait(lambda: store.loaded().get("support_status") == 1, timeout=5.0)
        time.sleep(1.5)  # one interval: the count of what was not logged is written
    finally:
        store.stop()
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert 1 <= len(lines) <= 5, (len(lines), lines[:3])
    told = [re.search(r"ignored ([\d,]+)", line) for line in lines]
    assert sum(int(t[1].replace(",", "")) for t in told if t) == 100_000, lines
