"""Stored predictions: every order and ticket scored once per active model version.

A prediction of an order or a ticket depends only on its features, which are fixed once
the ETL has computed them (``ml.feature_table``), and on the model version. So rather
than running the models per request, :func:`refresh` scores every feature row that has no
prediction by the active version yet — in chunks, each chunk's features fetched once and
run through each model once — and writes them to ``ml.order_predictions`` /
``ml.ticket_predictions`` (migration 0008). The compiled read path joins them by primary
key, version included, so a query of 500 orders with ``predictedStatus`` is still one
statement; an object without a current row (loaded since the last refresh, or scored by a
version that is no longer active) is scored on request exactly as before.

Called after each ETL run (``ml.hooks``), after a model is activated (``cdms ml train`` /
``activate``) and by ``cdms ml score``. The rows written are the values the request path
would have produced (``ml.batch.predictions``), serialized as the API serializes them.

Imports only numpy, onnxruntime and SQLAlchemy (no scikit-learn).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ml import feature_table, registry
from ml.batch import Predicted, predictions
from ml.feature_table import Table
from ml.scorer import Scorer

CHUNK = 50_000

Progress = Callable[[str, int, int], None]  # (table, rows scored so far, rows to score)


@dataclass(frozen=True)
class Stored:
    """A kind's stored predictions: the table, its key, the feature table it follows."""

    table: str
    key: str
    features: Table

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.features.specs)


ORDERS = Stored("ml.order_predictions", "order_id", feature_table.ORDERS)
TICKETS = Stored("ml.ticket_predictions", "ticket_id", feature_table.TICKETS)
STORED: tuple[Stored, ...] = (ORDERS, TICKETS)
BY_KIND: dict[str, Stored] = {"order": ORDERS, "ticket": TICKETS}


def doc(p: Predicted) -> str:
    """The prediction as the API serializes ``{ label probability }`` or ``{ value }``."""
    if p.label is None:
        return json.dumps({"value": p.value}, separators=(",", ":"))
    return json.dumps({"label": p.label, "probability": p.probability}, separators=(",", ":"))


def probabilities_doc(p: Predicted) -> str | None:
    """``probabilities { label probability }`` as the API serializes it (classifiers)."""
    if p.label is None:
        return None
    rows = [{"label": c, "probability": v} for c, v in p.probabilities]
    return json.dumps(rows, separators=(",", ":"))


def _missing_sql(s: Stored, models: Sequence[tuple[str, int]]) -> str:
    """Feature rows lacking a prediction by one of ``models`` (name, active version)."""
    lacks = " OR ".join(
        f"NOT EXISTS (SELECT 1 FROM {s.table} AS p WHERE p.{s.key} = f.{s.features.key}"
        f" AND p.model = '{name}' AND p.version = {int(version)})"
        for name, version in models
    )
    return f"FROM {s.features.name} AS f WHERE ({lacks})"


def refresh(
    engine: Engine,
    *,
    models: Sequence[str] | None = None,
    progress: Progress | None = None,
    chunk: int = CHUNK,
) -> dict[str, int]:
    """Score every object that has features but no prediction by the active version of
    its models (of ``models``, or all); returns the rows written per table. Each chunk is
    its own transaction (a stop loses at most one chunk, nothing half-written)."""
    with engine.connect() as conn:
        scorers = {
            s.name: s for s in registry.load_active(conn) if models is None or s.name in models
        }
    out: dict[str, int] = {}
    for s in STORED:
        active = [scorers[m] for m in s.models if m in scorers]
        if not active:
            out[s.table] = 0
            continue
        versions = [(m.name, m.version) for m in active]
        with engine.connect() as conn:
            total = int(
                conn.execute(sa.text(f"SELECT count(*) {_missing_sql(s, versions)}")).scalar_one()
            )
        done = 0
        written = 0
        after = -1
        if progress is not None:
            progress(s.table, 0, total)
        while done < total:
            with engine.begin() as conn:
                ids = [
                    int(r[0])
                    for r in conn.execute(
                        sa.text(
                            f"SELECT f.{s.features.key} {_missing_sql(s, versions)}"
                            f" AND f.{s.features.key} > :after"
                            f" ORDER BY f.{s.features.key} LIMIT :n"
                        ),
                        {"after": after, "n": chunk},
                    )
                ]
                if not ids:
                    break
                written += _score_chunk(conn, s, active, ids)
            after = ids[-1]
            done += len(ids)
            if progress is not None:
                progress(s.table, min(done, total), total)
        out[s.table] = written
    return out


def _score_chunk(conn: Connection, s: Stored, active: Sequence[Scorer], ids: list[int]) -> int:
    """Score ``ids`` by every model of ``active`` (one run each) and upsert the rows."""
    frame = feature_table.fetch(conn, s.features.sql_file, ids, s.features.kinds)
    keys = [int(k) for k in frame.keys.tolist()]
    rows: list[tuple[Any, ...]] = []
    for model in active:
        inputs = {f.name: frame.columns[f.name].reshape(-1, 1) for f in model.spec.features}
        for key, p in zip(keys, predictions(model, model.score(inputs)), strict=True):
            rows.append(
                (key, p.model, p.version, p.label, p.probability, probabilities_doc(p),
                 p.value, doc(p))
            )  # fmt: skip
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    cols = f"{s.key}, model, version, label, probability, probabilities, value, doc"
    with raw.cursor() as cur:
        cur.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS _scored (LIKE {s.table} INCLUDING DEFAULTS)"
            " ON COMMIT DROP"
        )
        with cur.copy(f"COPY _scored ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(
            f"INSERT INTO {s.table} ({cols}) SELECT {cols} FROM _scored"
            f" ON CONFLICT ({s.key}, model) DO UPDATE SET version = EXCLUDED.version,"
            " label = EXCLUDED.label, probability = EXCLUDED.probability,"
            " probabilities = EXCLUDED.probabilities, value = EXCLUDED.value,"
            " doc = EXCLUDED.doc, scored_at = now()"
        )
        cur.execute("DROP TABLE _scored")
    return len(rows)
