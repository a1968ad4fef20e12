"""Stored predictions: every order and ticket scored once per active model version.

A prediction of an order or a ticket depends only on its features (``ml.feature_table``,
recomputed by the pipeline when a load touches the object) and on the model version. So rather
than running the models per request, :func:`refresh` scores every feature row that has no
prediction by the active version yet — in chunks, each chunk's features fetched once and
run through each model once — and writes them to ``ml.order_predictions`` /
``ml.ticket_predictions`` (migration 0008). The compiled read path joins them by primary
key, version included, so a query of 500 orders with ``predictedStatus`` is still one
statement; an object without a current row (loaded since the last refresh, or scored by a
version that is no longer active) is scored on request exactly as before.

Called by the pipeline's ``scoring`` step for the orders and tickets a load touched
(``etl.pipeline``; features whose values changed lose their row first: :func:`forget`),
after a model is activated (``cdms ml train`` / ``activate``) and by ``cdms ml score``.
The rows written are the values the request path would have produced
(``ml.batch.predictions``), serialized as the API serializes them.

Imports only numpy, onnxruntime (in :func:`refresh`) and SQLAlchemy (no scikit-learn).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ml import feature_table
from ml.errors import InvalidModelError
from ml.feature_table import Table, _columns
from ml.features import FeatureFrame
from ml.specs import CHURN_RISK, ORDER_VALUE, spec

if TYPE_CHECKING:  # onnxruntime is loaded by refresh only (the ETL imports STORED)
    from ml.batch import Predicted
    from ml.scorer import Array, Scorer, Scores

CHUNK = 50_000

Progress = Callable[[str, int, int], None]  # (table, rows scored so far, rows to score)


@dataclass(frozen=True)
class Stored:
    """A kind's stored predictions: the table, its key, the feature table it follows."""

    kind: str  # as ml.batch.KINDS and the view ml.stored_predictions
    table: str
    key: str
    features: Table
    # a further condition (over the stored row's alias ``{p}``) for a row to be served
    current: str = ""

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.features.specs)

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column but the key and ``scored_at``, model by model."""
        return tuple(c for m in self.models for c in columns(m))


def columns(model: str) -> tuple[str, ...]:
    """A model's columns in its table: ``<model>_version, _label, _probability,
    _probabilities, _doc`` (a classifier) or ``_version, _value, _doc`` (the regressor)."""
    from ml.specs import Task

    fields = (
        ("version", "label", "probability", "probabilities", "doc")
        if spec(model).task is Task.CLASSIFICATION
        else ("version", "value", "doc")
    )
    return tuple(f"{model}_{f}" for f in fields)


ORDERS = Stored("order", "ml.order_predictions", "order_id", feature_table.ORDERS)
TICKETS = Stored("ticket", "ml.ticket_predictions", "ticket_id", feature_table.TICKETS)
# customers: expectedOrderValue and churnRisk (migrations 0027, 0014), their features the
# feature query itself as of today's cut-off (ml.stored_customers)
CUSTOMERS = Stored(
    "customer",
    "ml.customer_predictions",
    "customer_id",
    Table(
        "dw.dim_customer",
        "customer_id",
        "dw.dim_customer",
        "customers.sql",
        (ORDER_VALUE, CHURN_RISK),
    ),
    current="{p}.as_of = date_trunc('day', now(), 'UTC')",
)
STORED: tuple[Stored, ...] = (ORDERS, TICKETS, CUSTOMERS)
BY_KIND: dict[str, Stored] = {s.kind: s for s in STORED}


def read(conn: Connection, kind: str, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """One statement: the stored rows of ``ids`` (every model's columns but the JSON
    documents, by column name), by id; objects without a row (customers: without one of
    today) are absent. Empty for a kind whose predictions are not stored."""
    s = BY_KIND.get(kind)
    if s is None or not ids:
        return {}
    cols = [c for c in s.columns if not c.endswith("_doc")]
    current = f" AND {s.current.format(p='p')}" if s.current else ""
    rows = conn.execute(
        sa.text(
            f"SELECT {s.key}, {', '.join(cols)} FROM {s.table} AS p"
            f" WHERE {s.key} = ANY(:ids){current}"
        ),
        {"ids": list(ids)},
    )
    return {int(r[0]): dict(zip(cols, r[1:], strict=True)) for r in rows}


def predicted(row: dict[str, Any], model: str, version: int) -> Predicted | None:
    """The prediction ``row`` (of :func:`read`) holds by ``model`` at ``version``, as
    scoring it would give it (the same floats: the columns are float8 of the scores); None
    when the row has none by that version."""
    from ml.batch import Predicted

    if row.get(f"{model}_version") != version:
        return None
    if f"{model}_value" in row:
        return Predicted(model, version, value=float(row[f"{model}_value"]))
    probabilities = tuple(
        (str(p["label"]), float(p["probability"])) for p in row[f"{model}_probabilities"]
    )
    return Predicted(
        model,
        version,
        label=str(row[f"{model}_label"]),
        probability=float(row[f"{model}_probability"]),
        probabilities=probabilities,
    )


def forget(conn: Connection, fact: str, changed: Sequence[int], touched: Sequence[int] = ()) -> int:
    """Delete the stored predictions of the objects of ``fact`` (``dw.fact_orders`` ...)
    whose features ``changed``, and of those of ``touched`` that have no features any more
    (gone); returns the rows deleted."""
    s = next(s for s in STORED if s.features.fact == fact)
    if s is CUSTOMERS:
        raise ValueError("customers' predictions are forgotten by ml.stored_customers.forget")
    if not changed and not touched:
        return 0
    # (one index condition on the key: an OR of the two would scan the table)
    result = conn.execute(
        sa.text(
            f"DELETE FROM {s.table} AS p WHERE p.{s.key} = ANY(:keys)"
            f" AND (p.{s.key} = ANY(:changed) OR NOT EXISTS (SELECT 1 FROM {s.features.name}"
            f" AS f WHERE f.{s.features.key} = p.{s.key}))"
        ),
        {"keys": sorted({*changed, *touched}), "changed": list(changed)},
    )
    return int(result.rowcount or 0)


def _lacks(s: Stored, models: Sequence[tuple[str, int]]) -> tuple[list[str], dict[str, Any]]:
    """Per model of ``models`` (name, active version): the condition that the feature row
    ``f`` (its stored row ``p`` LEFT JOINed) has no prediction by that version; with the
    bound parameters."""
    lacks = [f"p.{name}_version IS DISTINCT FROM :v{j}" for j, (name, _) in enumerate(models)]
    return lacks, {f"v{j}": int(version) for j, (_, version) in enumerate(models)}


def _from(s: Stored) -> str:
    return f"FROM {s.features.name} AS f LEFT JOIN {s.table} AS p ON p.{s.key} = f.{s.features.key}"


_ACTIVE = sa.text("SELECT name, version FROM ml.model_version WHERE active")


def refresh(
    engine: Engine,
    *,
    models: Sequence[str] | None = None,
    progress: Progress | None = None,
    chunk: int = CHUNK,
    keys: Mapping[str, Sequence[int]] | None = None,
    scorers: Sequence[Scorer] | None = None,
    customers: Sequence[int] | None = None,
    customers_at_most: int | None = None,
) -> dict[str, int]:
    """Score every object that has features but no prediction by the active version of
    its models (of ``models``, or all; an unknown name is a BadUserInputError before any
    work), by those models only; returns the predictions (object x model) written per
    table. With ``keys`` (``{fact table: ids}``, e.g. ``{"dw.fact_orders": [...]}``), only
    those objects are looked at. ``scorers`` are models already loaded (a server's store):
    those versions are used instead of loading the active ones. With ``customers``, only
    those current customers are looked at for today's predictions (None: every one); with
    ``customers_at_most``, at most that many of them are scored (the rest: on request). Each
    chunk is its own transaction (a stop loses at most one chunk, nothing half-written).
    When nothing is missing it costs a registry query and one count per table (no model is
    loaded)."""
    wanted = None if models is None else {spec(m).name for m in models}
    with engine.connect() as conn:
        if scorers is not None:
            given = {m.name: m for m in scorers if wanted is None or m.name in wanted}
            versions = {n: m.version for n, m in given.items()}
        else:
            versions = {
                str(n): int(v) for n, v in conn.execute(_ACTIVE) if wanted is None or n in wanted
            }
        totals = {s.table: _count(conn, s, versions, _keys_of(s, keys, customers)) for s in STORED}
        loaded: dict[str, Scorer] = {}
        if scorers is not None:
            loaded = given
        elif any(totals.values()):
            from ml import registry

            loaded = {m.name: m for m in registry.load_active(conn) if m.name in versions}
            now = {m.name: m.version for m in loaded.values()}
            if now != versions:  # activated meanwhile, or refused by validation
                versions = now
                totals = {
                    s.table: _count(conn, s, versions, _keys_of(s, keys, customers)) for s in STORED
                }
    if customers_at_most is not None:
        totals[CUSTOMERS.table] = min(totals[CUSTOMERS.table], customers_at_most)
    out: dict[str, int] = {}
    for s in STORED:
        total = totals[s.table]
        if progress is not None and any(m in versions for m in s.models):
            progress(s.table, 0, total)
        out[s.table] = (
            _refresh_table(engine, s, loaded, total, progress, chunk, _keys_of(s, keys, customers))
            if total
            else 0
        )
    if models is None and keys is None and scorers is None:  # every row, every active model
        _mark_complete(engine, versions)
    return out


# The pipeline's steps that write features and score them (etl.pipeline.PIPELINE; ml does
# not import etl): dw.etl_applied holds the last run whose changes each has applied.
_APPLIED = sa.text(
    "SELECT coalesce(max(run_id) FILTER (WHERE step = 'features'), 0),"
    " coalesce(max(run_id) FILTER (WHERE step = 'scoring'), 0) FROM dw.etl_applied"
)
_MARKS = sa.text("SELECT stored_table, versions FROM ml.stored_state")


def _mark_complete(engine: Engine, versions: Mapping[str, int]) -> None:
    """Record that every feature row of each table has a prediction by ``versions``."""
    with engine.begin() as conn:
        for s in STORED:
            if s is CUSTOMERS:  # a day's scores: counted (current), never marked complete
                continue
            want = {m: versions[m] for m in s.models if m in versions}
            conn.execute(
                sa.text(
                    "INSERT INTO ml.stored_state (stored_table, versions) VALUES (:t, :v)"
                    " ON CONFLICT (stored_table) DO UPDATE"
                    " SET versions = EXCLUDED.versions, completed_at = now()"
                ),
                {"t": s.table, "v": json.dumps(want, sort_keys=True)},
            )


def current(conn: Connection, *, customers: bool = True) -> bool:
    """Whether no stored prediction is missing, known without counting (a few index
    lookups, whatever the data size: a restart's look). True when the last full
    :func:`refresh` of each table scored by the versions active now, and the pipeline's
    scoring step has applied every run its features step has (each feature change since was
    scored); and, with churn_risk or order_value active (unless ``customers`` is False),
    every current customer has today's predictions by them (an anti-join of the customers,
    tens of milliseconds at 100,000). False means "count": :func:`refresh` finds what is missing."""
    active = {str(n): int(v) for n, v in conn.execute(_ACTIVE)}
    marks = {str(t): dict(v) for t, v in conn.execute(_MARKS)}
    for s in STORED:
        want = {m: active[m] for m in s.models if m in active}
        if s is CUSTOMERS and not customers:
            continue
        if want and s is CUSTOMERS:  # today's predictions: one anti-join of the customers
            from ml import stored_customers

            if stored_customers.count(conn, want):
                return False
        elif want and marks.get(s.table) != want:
            return False
    features, scoring = conn.execute(_APPLIED).one()
    return int(scoring) >= int(features)


def _keys_of(
    s: Stored, keys: Mapping[str, Sequence[int]] | None, customers: Sequence[int] | None
) -> list[int] | None:
    if s is CUSTOMERS:  # a day's scores: every current customer unless told which
        return None if customers is None else list(customers)
    return None if keys is None else list(keys.get(s.features.fact, ()))


def _count(conn: Connection, s: Stored, versions: dict[str, int], keys: list[int] | None) -> int:
    """Feature rows (of ``keys``) lacking a prediction by the ``versions`` of the table's
    models."""
    models = [(m, versions[m]) for m in s.models if m in versions]
    if models and s is CUSTOMERS:  # every current customer is looked at: a day's scores
        from ml import stored_customers

        return stored_customers.count(conn, dict(models), keys)
    if not models or keys == []:
        return 0
    lacks, params = _lacks(s, models)
    only = "" if keys is None else f" AND f.{s.features.key} = ANY(:keys)"
    sql = f"SELECT count(*) {_from(s)} WHERE ({' OR '.join(lacks)}){only}"
    return int(conn.execute(sa.text(sql), {**params, "keys": keys or []}).scalar_one())


def _refresh_table(
    engine: Engine,
    s: Stored,
    scorers: dict[str, Scorer],
    total: int,
    progress: Progress | None,
    chunk: int,
    keys: list[int] | None,
) -> int:
    """Score the ``total`` rows of ``s`` (of ``keys``) lacking a prediction, ``chunk`` rows
    at a time."""
    active = [scorers[m] for m in s.models if m in scorers]
    if s is CUSTOMERS:
        from ml import stored_customers

        return stored_customers.refresh(engine, s, active, total, progress, chunk, keys)
    lacks, params = _lacks(s, [(m.name, m.version) for m in active])
    only = "" if keys is None else f" AND f.{s.features.key} = ANY(:keys)"
    # key, event_at, the features (as feature_table.fetch reads them), then one
    # "lacks a current prediction" flag per model
    cols = ", ".join([f"f.{c}" for c in s.features.columns] + lacks)
    page = sa.text(
        f"SELECT f.{s.features.key} AS key, f.event_at, {cols}"
        f" {_from(s)} WHERE ({' OR '.join(lacks)}){only}"
        f" AND f.{s.features.key} > :after ORDER BY f.{s.features.key} LIMIT :n"
    )
    first_flag = 2 + len(s.features.columns)
    done = written = 0
    after = -1
    while done < total:
        with engine.begin() as conn:
            bound = {**params, "after": after, "n": chunk, "keys": keys or []}
            rows = conn.execute(page, bound).all()
            if not rows:
                break
            frame = _columns(rows, s.features.kinds)
            flags = np.array([r[first_flag:] for r in rows], dtype=bool).reshape(
                len(rows), len(active)
            )
            written += _write(conn, s, active, frame, flags)
        after = int(frame.keys[-1])
        done += len(rows)
        if progress is not None:
            progress(s.table, min(done, total), total)
    return written


def _write(
    conn: Connection, s: Stored, active: Sequence[Scorer], frame: FeatureFrame, flags: Array
) -> int:
    """Score the rows of ``frame`` that lack a model's prediction (``flags[:, j]`` for
    model ``j`` of ``active``) by that model, in one run each, and write those predictions
    (one COPY in text format into a staging table, one upsert that sets, in each row, the
    columns of the models that scored it and keeps the others); returns the predictions
    written."""
    n = len(frame.keys)
    parts: dict[str, list[str]] = {}  # per model of the table: its columns' text, per row
    scored = np.zeros(n, dtype=bool)
    written = 0
    for j, model in enumerate(active):
        lacking = flags[:, j]
        if not lacking.any():
            continue
        every = bool(lacking.all())
        inputs = {
            f.name: (frame.columns[f.name] if every else frame.columns[f.name][lacking]).reshape(
                -1, 1
            )
            for f in model.spec.features
        }
        got = iter(_fragments(model, model.score(inputs)))
        empty = _nulls(model.name)
        parts[model.name] = [next(got) if hit else empty for hit in lacking.tolist()]
        scored |= lacking
        written += int(lacking.sum())
    if not written:
        return 0
    keys = frame.keys.tolist()
    cols = [parts.get(m) or [_nulls(m)] * n for m in s.models]
    lines = [f"{keys[i]}\t" + "\t".join(c[i] for c in cols) + "\n" for i in np.flatnonzero(scored)]
    keep = ", ".join(
        f"{c} = CASE WHEN EXCLUDED.{m}_version IS NULL THEN t.{c} ELSE EXCLUDED.{c} END"
        for m in s.models
        for c in columns(m)
    )
    upsert(conn, s, (s.key, *s.columns), keep, lines)
    return written


def upsert(
    conn: Connection, s: Stored, names: Sequence[str], update: str, lines: Sequence[str]
) -> None:
    """COPY ``lines`` (COPY text of the columns ``names``) into ``s.table``, a conflicting
    row updated by ``update`` (``t`` is the row, ``EXCLUDED`` the new one), in ``conn``'s
    transaction."""
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    cols = ", ".join(names)
    with raw.cursor() as cur:
        # one writer at a time per table (until this chunk commits): another refresh that
        # read the same rows waits here, then writes the same values
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"cdms_stored:{s.table}",))
        cur.execute(f"CREATE TEMP TABLE _scored (LIKE {s.table} INCLUDING DEFAULTS) ON COMMIT DROP")
        with cur.copy(f"COPY _scored ({cols}) FROM STDIN") as copy:
            copy.write("".join(lines))
        cur.execute(
            f"INSERT INTO {s.table} AS t ({cols}) SELECT {cols} FROM _scored"
            f" ON CONFLICT ({s.key}) DO UPDATE SET {update}, scored_at = now()"
        )
        cur.execute("DROP TABLE _scored")


def _nulls(model: str) -> str:
    return "\t".join(["\\N"] * len(columns(model)))


def _fragments(model: Scorer, scores: Scores) -> list[str]:
    """The rows of one model's ``scores`` as its columns in ``COPY ... FROM STDIN`` text
    (``version, label, probability, probabilities, doc`` or ``version, value, doc``): the
    values :func:`ml.batch.predictions` gives, the JSON columns written as the request path
    answers them (``json.dumps(..., separators=(",", ":"))`` after
    ``schema.execute.pg_floats``) ``{"label", "probability"}`` / ``{"value"}`` and the
    classes' ``[{"label", "probability"}, ...]``. A finite Python float is written by
    ``repr`` in ``json.dumps`` too, so ``%r`` gives the same bytes without a call per row;
    one without a fraction is an int first (:func:`_as_pg`: ``257``, not ``257.0``)."""
    head = f"{model.version}\t"
    if scores.values is not None:
        _finite(scores.values, model)
        values = _as_pg([round(v, 2) for v in scores.values.tolist()])
        return [f'{head}{v!r}\t{{"value":{v!r}}}' for v in values]
    assert scores.probabilities is not None and scores.labels is not None
    proba = scores.probabilities
    index = {c: j for j, c in enumerate(model.classes)}
    reported = model.spec.reports  # (a risk model reports one class's probability)
    at = np.array([index.get(reported or label, -1) for label in scores.labels], dtype=np.int64)
    _finite(proba, model)
    best = _as_pg(np.where(at >= 0, proba[np.arange(len(at)), at], 0.0).tolist())
    rows: list[list[float | int]] = list(proba.tolist())
    for i in np.flatnonzero(_integral(proba).any(axis=1)).tolist():
        rows[i] = _as_pg(rows[i])
    # per class: "<label>\t" and the doc's opening, escaped once for COPY
    label_head = {
        c: (f"{_copy(c)}\t", _copy('{"label":' + json.dumps(c) + ',"probability":'))
        for c in dict.fromkeys(scores.labels)
    }
    probs = _copy(
        "["
        + ",".join(
            '{"label":' + json.dumps(c).replace("%", "%%") + ',"probability":%r}'
            for c in model.classes
        )
        + "]"
    )
    return [
        f"{head}{label_head[label][0]}{p!r}\t{probs % tuple(row)}\t{label_head[label][1]}{p!r}}}"
        for label, p, row in zip(scores.labels, best, rows, strict=True)
    ]


# schema.execute.pg_floats's bound (ml does not import schema): past it a float stays one
_EXACT = 2.0**53


def _integral(values: Array) -> Array:
    """Which of ``values`` have no fraction (and are written as ints)."""
    integral: Array = (values == np.trunc(values)) & (np.abs(values) < _EXACT)
    return integral


def _as_pg(values: list[float]) -> list[float | int]:
    """``values`` with each one that has no fraction as an int, so that ``%r`` writes it as
    PostgreSQL writes a float8 and the request path answers it (``4``, not ``4.0``: docs/
    api.md, Formats); the others as they are (one vectorised test, a call per such value
    only)."""
    out: list[float | int] = list(values)
    for i in np.flatnonzero(_integral(np.asarray(values, dtype=np.float64))).tolist():
        out[i] = int(values[i])
    return out


def _copy(text: str) -> str:
    """``text`` escaped for COPY's text format."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _finite(values: Array, model: Scorer) -> None:
    """JSON has no NaN or infinity (and the json columns refuse them)."""
    if not bool(np.isfinite(values).all()):
        raise InvalidModelError(
            f"model {model.name} version {model.version} scored a non-finite value",
            name=model.name,
            version=model.version,
            reason="non_finite",
        )
