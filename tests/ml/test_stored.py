"""``ml.stored.refresh``: every feature row scored once per active model version, with the
values and the serialization the request path (``ml.batch``) gives."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.engine import make_engine
from db.errors import BadUserInputError
from db.seed import seed
from etl import pipeline, runner
from ml import batch, stored
from ml.registry import load_active, register
from ml.serving import close_store
from ml.train import TrainedModel
from schema.execute import pg_floats

SEP = (",", ":")


def _json(value: Any) -> str:
    """``value`` as the API writes it (a float without a fraction as an int, ``4``)."""
    return json.dumps(pg_floats(value), separators=SEP)


@pytest.fixture(scope="module")
def shop(clone_database: Callable[[str], str]) -> Iterator[Engine]:
    """A loaded warehouse of its own (the registry and the stored tables change here)."""
    url = clone_database("stored")
    seed(url, 150, 1_500, 3)
    pipeline.run(url)
    runner.dispose(url)
    engine = make_engine(url)
    yield engine
    close_store(engine)


@pytest.fixture
def active(shop: Engine, trained: dict[str, TrainedModel]) -> Engine:
    """``shop`` with the trained models active and no stored prediction."""
    with shop.begin() as conn:
        has = conn.execute(sa.text("SELECT count(*) FROM ml.model_version")).scalar_one()
        conn.execute(
            sa.text("TRUNCATE ml.order_predictions, ml.ticket_predictions, ml.customer_predictions")
        )
    if not has:
        for m in trained.values():
            assert register(shop, m).activated
    return shop


def _rows(engine: Engine, s: stored.Stored) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(
                sa.text(
                    "SELECT id, model, version, label, probability,"
                    " probabilities::text AS probabilities, value, doc::text AS doc"
                    " FROM ml.stored_predictions WHERE kind = :kind ORDER BY id, model"
                ),
                {"kind": s.kind},
            ).mappings()
        ]


def _ids(engine: Engine, s: stored.Stored) -> list[int]:
    with engine.connect() as conn:
        return [
            int(i)
            for i in conn.execute(
                sa.text(f"SELECT {s.features.key} FROM {s.features.name} ORDER BY 1")
            ).scalars()
        ]


def _versions(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {s.name: s.version for s in load_active(conn)}


def _expected(engine: Engine, s: stored.Stored, kind: str) -> dict[tuple[int, str], Any]:
    """What the request path computes for every id, by the same (active) scorers."""
    return _expected_for(engine, s, kind, _ids(engine, s))


def _expected_for(
    engine: Engine, s: stored.Stored, kind: str, ids: list[int]
) -> dict[tuple[int, str], Any]:
    """What the request path computes for ``ids``, by the same (active) scorers."""
    out: dict[tuple[int, str], batch.Predicted] = {}
    with engine.connect() as conn:
        scorers = [m for m in load_active(conn) if m.name in s.models]
        features = batch.load(conn, kind, ids)
    for m in scorers:
        for i, p in batch.score(engine, m, kind, features, ids, "test").items():
            out[(i, m.name)] = p
    return out


@pytest.mark.parametrize(("kind", "which"), [("order", stored.ORDERS), ("ticket", stored.TICKETS)])
def test_refresh_stores_what_the_request_path_computes(
    active: Engine, kind: str, which: stored.Stored
) -> None:
    written = stored.refresh(active, chunk=700)  # several chunks
    ids = _ids(active, which)
    assert written[which.table] == len(ids) * len(which.models) > 0
    rows = _rows(active, which)
    assert [(r["id"], r["model"]) for r in rows] == [(i, m) for i in ids for m in which.models]
    expected = _expected(active, which, kind)
    versions = _versions(active)
    with active.connect() as conn:
        classes = {m.name: m.classes for m in load_active(conn)}
    for r in rows:
        p = expected[(r["id"], r["model"])]
        assert r["version"] == versions[r["model"]] == p.version
        assert (r["label"], r["probability"], r["value"]) == (p.label, p.probability, p.value)
        if p.label is None:
            assert r["doc"] == _json({"value": p.value})  # byte for byte
            assert json.loads(r["doc"]) == {"value": r["value"]}
            assert r["probabilities"] is None
        else:
            want = {"label": p.label, "probability": p.probability}
            assert r["doc"] == _json(want)
            assert json.loads(r["doc"]) == {"label": r["label"], "probability": r["probability"]}
            probs = json.loads(r["probabilities"])
            assert [x["label"] for x in probs] == list(classes[r["model"]])
            assert [(x["label"], x["probability"]) for x in probs] == list(p.probabilities)
            assert r["probabilities"] == _json(
                [{"label": c, "probability": v} for c, v in p.probabilities]
            )


def test_customers_are_stored_by_both_models_as_the_request_path_computes(
    active: Engine,
) -> None:
    """Each current customer's order value and churn risk, of today's cut-off, are what the
    request path computes for them (the same floats; the value's document byte for byte)."""
    c = stored.CUSTOMERS
    written = stored.refresh(active, chunk=70)  # several chunks
    with active.connect() as conn:
        ids = [
            int(i)
            for i in conn.execute(
                sa.text("SELECT customer_id FROM dw.dim_customer WHERE is_current ORDER BY 1")
            ).scalars()
        ]
    assert written[c.table] == len(ids) * 2 > 0
    assert c.models == ("order_value", "churn_risk")
    rows = _rows(active, c)
    assert [(r["id"], r["model"]) for r in rows] == [(i, m) for i in ids for m in sorted(c.models)]
    expected = _expected_for(active, c, "customer", ids)
    versions = _versions(active)
    for r in rows:
        p = expected[(r["id"], r["model"])]
        assert r["version"] == versions[r["model"]] == p.version
        assert (r["label"], r["probability"], r["value"]) == (p.label, p.probability, p.value)
        if p.label is None:
            assert r["doc"] == _json({"value": p.value})
        else:
            assert r["doc"] == _json({"label": p.label, "probability": p.probability})
    assert len({r["value"] for r in rows if r["model"] == "order_value"}) > 10  # varied


def test_a_customer_moved_to_a_new_day_by_one_model_loses_the_others_prediction(
    active: Engine,
) -> None:
    """A row is of one cut-off: scoring only churn_risk for a customer whose row is of
    yesterday leaves no order value of yesterday served as today's; one still of today
    keeps it; a refresh by every model writes what is missing."""
    c = stored.CUSTOMERS
    stored.refresh(active)
    with active.begin() as conn:
        old, fresh = conn.execute(
            sa.text("SELECT customer_id FROM ml.customer_predictions ORDER BY 1 LIMIT 2")
        ).scalars()
        conn.execute(
            sa.text(
                "UPDATE ml.customer_predictions SET as_of = as_of - interval '1 day'"
                " WHERE customer_id = :c"
            ),
            {"c": old},
        )
        conn.execute(
            sa.text(
                "UPDATE ml.customer_predictions SET churn_risk_version = churn_risk_version + 100"
                " WHERE customer_id = :c"
            ),
            {"c": fresh},
        )
    assert stored.refresh(active, models=["churn_risk"])[c.table] == 2

    def row(customer: int) -> tuple[Any, ...]:
        with active.connect() as conn:
            return tuple(
                conn.execute(
                    sa.text(
                        "SELECT as_of = date_trunc('day', now(), 'UTC'), churn_risk_version,"
                        " order_value_version FROM ml.customer_predictions"
                        " WHERE customer_id = :c"
                    ),
                    {"c": customer},
                ).one()
            )

    versions = _versions(active)
    assert row(old) == (True, versions["churn_risk"], None)
    assert row(fresh) == (True, versions["churn_risk"], versions["order_value"])
    assert stored.refresh(active)[c.table] == 1  # the order value of ``old``, today's
    assert row(old) == (True, versions["churn_risk"], versions["order_value"])


def test_a_second_refresh_writes_nothing(active: Engine) -> None:
    first = stored.refresh(active)
    assert all(first.values())
    before = _rows(active, stored.ORDERS)
    assert stored.refresh(active) == {s.table: 0 for s in stored.STORED}
    assert _rows(active, stored.ORDERS) == before


def test_a_new_active_version_rewrites_every_row(
    active: Engine, trained: dict[str, TrainedModel]
) -> None:
    stored.refresh(active)
    before = _rows(active, stored.ORDERS)
    old = _versions(active)["order_status"]
    new = register(active, trained["order_status"], force=True)
    assert new.activated and new.version > old
    progress: list[tuple[str, int, int]] = []
    written = stored.refresh(active, progress=lambda *a: progress.append(a))
    n = len(_ids(active, stored.ORDERS))
    assert written == {stored.ORDERS.table: n, stored.TICKETS.table: 0, stored.CUSTOMERS.table: 0}
    orders = [p[1:] for p in progress if p[0] == stored.ORDERS.table]
    assert orders[0] == (0, n) and orders[-1] == (n, n)
    value = _versions(active)["order_value"]
    after = _rows(active, stored.ORDERS)
    assert {(r["model"], r["version"]) for r in after} == {
        ("order_status", new.version),
        ("order_value", value),
    }
    # the other model's rows are current: left as they were
    assert [r for r in after if r["model"] == "order_value"] == [
        r for r in before if r["model"] == "order_value"
    ]


def test_models_restricts_the_refresh(active: Engine) -> None:
    written = stored.refresh(active, models=["support_status"])
    assert written[stored.ORDERS.table] == 0 and written[stored.TICKETS.table] > 0
    assert _rows(active, stored.ORDERS) == []
    written = stored.refresh(active, models=["order_value"])
    assert written[stored.ORDERS.table] == len(_ids(active, stored.ORDERS))
    assert {r["model"] for r in _rows(active, stored.ORDERS)} == {"order_value"}
    with pytest.raises(BadUserInputError, match="unknown model 'bogus'"):
        stored.refresh(active, models=["bogus"])


def test_no_active_model_writes_nothing(fresh_database: Callable[[], str]) -> None:
    url = fresh_database()
    seed(url, 30, 200, 5)
    pipeline.run(url)
    runner.dispose(url)
    engine = make_engine(url)
    assert stored.refresh(engine) == {s.table: 0 for s in stored.STORED}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ml.order_features")).scalar_one() > 0
        assert conn.execute(sa.text("SELECT count(*) FROM ml.order_predictions")).scalar_one() == 0


def test_copy_text_is_what_json_dumps_gives_for_any_label(active: Engine) -> None:
    """Labels with characters COPY or %-formatting would mangle, and awkward floats (one
    without a fraction written ``1``, as the API writes it)."""
    import dataclasses

    import numpy as np
    import psycopg

    from ml.scorer import Scores

    with active.connect() as conn:
        model = next(m for m in load_active(conn) if m.name == "support_status")
    odd = ("tab\there", "back\\slash 100% é", 'quote"\nnewline')
    model = dataclasses.replace(model, classes=odd)
    proba = np.array([[1e-07, 0.3333333333333333, 1.0], [0.5, 0.25, 0.25]])
    scores = Scores(labels=[odd[2], "not a class"], probabilities=proba, values=None)
    lines = [f"{k}\t{f}\n" for k, f in zip((1, 2), stored._fragments(model, scores), strict=True)]
    cols = ", ".join(stored.columns("support_status"))
    with active.connect() as conn:
        raw = conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        with raw.cursor() as cur:
            cur.execute("CREATE TEMP TABLE t (LIKE ml.ticket_predictions INCLUDING DEFAULTS)")
            with cur.copy(f"COPY t (ticket_id, {cols}) FROM STDIN") as copy:
                copy.write("".join(lines))
            got = cur.execute(
                "SELECT support_status_label, support_status_probability,"
                " support_status_probabilities::text, support_status_doc::text"
                " FROM t ORDER BY ticket_id"
            ).fetchall()
        raw.rollback()
    for (label, probability, probs, doc), row, want in zip(
        got, proba.tolist(), [(odd[2], 1.0), ("not a class", 0.0)], strict=True
    ):
        assert (label, probability) == want
        assert doc == _json({"label": want[0], "probability": want[1]})
        assert probs == _json(
            [{"label": c, "probability": v} for c, v in zip(odd, row, strict=True)]
        )
    assert '"probability":1}' in got[0][3] and '"probability":0}' in got[1][3]


def test_a_full_refresh_marks_the_tables_current_until_something_changes(
    active: Engine, trained: dict[str, TrainedModel]
) -> None:
    """``stored.current``: what a restart looks at instead of counting every object."""
    from etl.pipeline import PIPELINE

    # the steps ml.stored reads in dw.etl_applied by name
    assert {"features", "scoring"} <= {s.name for s in PIPELINE}

    def current() -> bool:
        with active.connect() as conn:
            return stored.current(conn)

    assert not current()  # the fixture truncated the tables: not known complete
    stored.refresh(active, models=["order_status"])  # a part only: still not known
    assert not current()
    stored.refresh(active)
    assert current()
    # the pipeline's features step ahead of its scoring step: changes not scored yet
    with active.begin() as conn:
        conn.execute(
            sa.text("UPDATE dw.etl_applied SET run_id = run_id + 1 WHERE step = 'features'")
        )
    assert not current()
    with active.begin() as conn:
        conn.execute(
            sa.text("UPDATE dw.etl_applied SET run_id = run_id - 1 WHERE step = 'features'")
        )
    assert current()
    # another version activated: its predictions are not all there
    new = register(active, trained["support_status"], force=True)
    assert new.activated and not current()
    assert stored.refresh(active)[stored.TICKETS.table] > 0
    assert current()
    # a truncated table forgets it was complete
    with active.begin() as conn:
        conn.execute(sa.text("TRUNCATE ml.ticket_predictions"))
    assert not current()
    stored.refresh(active)
    assert current()
    # customers' predictions are a day's: yesterday's rows, or a missing one, are not current
    with active.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE ml.customer_predictions SET as_of = as_of - interval '1 day'"
                " WHERE customer_id = (SELECT min(customer_id) FROM ml.customer_predictions)"
            )
        )
    assert not current()
    assert stored.refresh(active)[stored.CUSTOMERS.table] == 2  # its order value, churn risk
    assert current()


def test_a_restart_with_everything_current_scores_nothing(active: Engine) -> None:
    """The start-up work of ``cdms serve`` (api.startup.Background) on a warehouse, models
    and stored predictions that are all current: looks, and neither loads nor counts."""
    from api.startup import Background

    stored.refresh(active)
    url = active.url.render_as_string(hide_password=False)
    lines: list[str] = []
    work = Background(url, train=False, report=lines.append).start()
    work.join(60)
    assert work.done.is_set() and work.error is None, lines
    assert lines[0].startswith("warehouse: current"), lines
    assert "stored predictions: current" in lines, lines
    assert not any("written" in line or "loading" in line for line in lines), lines


def test_a_restart_after_midnight_leaves_the_days_churn_risks_to_the_runs(
    active: Engine,
) -> None:
    """After midnight every stored churn risk is of yesterday: a restart does not score all
    the customers before its first pipeline run (the runs store them, a batch each, and
    the others are computed on request meanwhile)."""
    from api.startup import Background

    stored.refresh(active)
    with active.begin() as conn:
        conn.execute(sa.text("UPDATE ml.customer_predictions SET as_of = as_of - interval '1 day'"))
    url = active.url.render_as_string(hide_password=False)
    lines: list[str] = []
    work = Background(url, train=False, report=lines.append).start()
    work.join(60)
    assert work.done.is_set() and work.error is None, lines
    assert "stored predictions: current" in lines, lines
    assert not any("written" in line for line in lines), lines
    with active.connect() as conn:
        assert not stored.current(conn)  # (what the runs will do)
        today = conn.execute(
            sa.text(
                "SELECT count(*) FROM ml.customer_predictions"
                " WHERE as_of = date_trunc('day', now(), 'UTC')"
            )
        ).scalar_one()
    assert today == 0
