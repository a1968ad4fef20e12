"""Predictions of a batch of objects: one feature fetch per kind, one model run per model.

Used by ``schema.predictions.complete`` for the predictions the read executor's statement
could not join from ``ml.stored``: features come from ``ml.feature_table.fetch`` (one
statement for every object of a kind) and, for objects the warehouse has not loaded yet,
from ``ml.online`` (the same feature query over the operational rows: two more
statements), each model scores every found object in ONE onnxruntime run, and every
prediction served is queued for ``ml.prediction_log`` with the digest of its input row
(:func:`digests`: the log keeps each distinct prediction once per principal). Only an id
that names no object at all is left without features.

Imports only numpy and SQLAlchemy (and our light modules): it runs inside the API server.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from sqlalchemy.engine import Connection, Engine

from ml import online, prediction_log
from ml.errors import NotInWarehouseError
from ml.feature_table import fetch
from ml.features import FeatureFrame, kinds_of
from ml.scorer import Array, Scorer, Scores
from ml.specs import (
    CHURN_RISK,
    ORDER_STATUS,
    ORDER_VALUE,
    SUPPORT_STATUS,
    FeatureKind,
    ModelSpec,
)


@dataclass(frozen=True)
class Kind:
    """A kind of object with prediction fields: its feature query and models."""

    name: str  # "order", "ticket", "customer" (also ml.prediction_log.entity)
    sql_file: str
    specs: tuple[ModelSpec, ...]
    entity: str  # in error messages


KINDS: dict[str, Kind] = {
    "order": Kind("order", "orders.sql", (ORDER_STATUS, ORDER_VALUE), "order"),
    "ticket": Kind("ticket", "tickets.sql", (SUPPORT_STATUS,), "support ticket"),
    "customer": Kind("customer", "customers.sql", (ORDER_VALUE, CHURN_RISK), "customer"),
}


class Predicted(NamedTuple):
    """One object's prediction by one model version (plain values, no GraphQL types)."""

    model: str
    version: int
    label: str | None = None  # classifiers
    probability: float | None = None  # of ``label`` (of ``spec.reports`` when it names one)
    probabilities: tuple[tuple[str, float], ...] = ()  # every class, in the model's order
    value: float | None = None  # regressors (rounded to cents)


@dataclass(frozen=True)
class Features:
    """The features of a batch of one kind, and where each id's row is."""

    frame: FeatureFrame
    rows: dict[int, int]


def load(conn: Connection, kind: str, ids: Sequence[int]) -> Features:
    """The features of every object of ``ids``: the warehouse's (one statement), and for
    objects it has not loaded yet, computed from the operational rows (``ml.online``: two
    statements, only when some are missing). Ids that name no object are absent."""
    k = KINDS[kind]
    kinds = kinds_of(*k.specs)
    frame = fetch(conn, k.sql_file, ids, kinds)
    found = set(frame.keys.tolist())
    missing = [i for i in dict.fromkeys(ids) if i not in found]
    if missing:
        frame = frame.concat(online.load(conn, k.sql_file, missing, kinds))
    return Features(frame, {int(key): i for i, key in enumerate(frame.keys)})


def not_in_warehouse(kind: str, id_: int) -> NotInWarehouseError:
    """The error of an object without features: since :func:`load` computes them for
    every existing object, only an id that names none (deleted meanwhile) gets it."""
    entity = KINDS[kind].entity
    return NotInWarehouseError(
        f"{entity} {id_} has no features (it does not exist, or no longer)",
        entity=entity,
        id=id_,
    )


def score(
    engine: Engine,
    model: Scorer,
    kind: str,
    features: Features,
    ids: Sequence[int],
    actor: str,
) -> dict[int, Predicted]:
    """The predictions of ``model`` for the ``ids`` that have features, in ONE run (none
    when no id has features); each is queued for the prediction log as ``actor``'s."""
    return score_groups(engine, model, [(kind, features, ids)], actor)[0]


def score_groups(
    engine: Engine,
    model: Scorer,
    groups: Sequence[tuple[str, Features, Sequence[int]]],
    actor: str,
    logged: Callable[[Callable[[], None]], None] | None = None,
) -> list[dict[int, Predicted]]:
    """:func:`score` for objects of several kinds a model serves (``order_value``: orders
    and customers), still in ONE run; one dict per group. Each group's predictions are
    queued for the log, or, with ``logged``, handed to it as a call that queues them (a
    mutation's payload: once the operation commits, never for objects it rolled back)."""
    parts = [
        (kind, features, [i for i in dict.fromkeys(ids) if i in features.rows])
        for kind, features, ids in groups
    ]
    if not any(found for _, _, found in parts):
        return [{} for _ in parts]
    inputs = {
        f.name: np.concatenate(
            [
                features.frame.columns[f.name][
                    np.array([features.rows[i] for i in found], dtype=np.int64)
                ]
                for _, features, found in parts
            ]
        ).reshape(-1, 1)
        for f in model.spec.features
    }
    rows = iter(predictions(model, model.score(inputs)))
    hashes = iter(digests(model.spec, inputs))
    out = []
    for kind, _, found in parts:
        scored = {i: next(rows) for i in found}
        entries = [(i, p, next(hashes)) for i, p in scored.items()]
        if logged is None:
            log(engine, kind, entries, actor)
        else:
            logged(functools.partial(log, engine, kind, entries, actor))
        out.append(scored)
    return out


def digests(spec: ModelSpec, inputs: dict[str, Array]) -> list[bytes]:
    """A 16-byte BLAKE2b digest of each row of ``inputs`` (the model's input columns, n x 1):
    the numeric features as float32 bytes, then each category's length and UTF-8 bytes, in
    the spec's feature order. The same input row gives the same digest in every process
    (``ml.prediction_log.features_hash``: the log's key)."""
    numeric = [f.name for f in spec.features if f.kind is not FeatureKind.CATEGORY]
    categories = [
        inputs[f.name].ravel().tolist() for f in spec.features if f.kind is FeatureKind.CATEGORY
    ]
    n = len(inputs[spec.features[0].name])
    if numeric:
        matrix = np.ascontiguousarray(
            np.hstack([inputs[c].reshape(-1, 1) for c in numeric]), dtype=np.float32
        )
        rows = matrix.view(np.dtype((np.void, 4 * len(numeric)))).ravel()
        heads = [bytes(r) for r in rows.tolist()]
    else:
        heads = [b""] * n
    out = []
    for i in range(n):
        h = hashlib.blake2b(heads[i], digest_size=16)
        for column in categories:
            text = str(column[i]).encode()
            h.update(len(text).to_bytes(4, "big"))
            h.update(text)
        out.append(h.digest())
    return out


def predictions(model: Scorer, scores: Scores) -> list[Predicted]:
    """Every row of ``scores`` as plain values (Python floats: ``tolist`` converts a whole
    array at once, with the values ``float()`` gives one by one)."""
    name, version = model.name, model.version
    if scores.values is not None:
        return [Predicted(name, version, value=round(v, 2)) for v in scores.values.tolist()]
    assert scores.probabilities is not None and scores.labels is not None
    classes = model.classes
    reported = model.spec.reports
    out = []
    for label, row in zip(scores.labels, scores.probabilities.tolist(), strict=True):
        probs = tuple(zip(classes, row, strict=True))
        best = next((p for c, p in probs if c == (reported or label)), 0.0)
        out.append(Predicted(name, version, label, best, probs))
    return out


def predicted(model: Scorer, scores: Scores, j: int) -> Predicted:
    """Row ``j`` of ``scores`` (a what-if query scores one row)."""
    return predictions(model, scores)[j]


def log(
    engine: Engine,
    kind: str,
    predictions: Iterable[tuple[int | None, Predicted, bytes]],
    actor: str,
) -> None:
    """Queue ``predictions`` (entity id, None for a what-if; the prediction; its input's
    digest) for ``ml.prediction_log`` (those the process queued before are skipped there)."""
    now = dt.datetime.now(dt.UTC)
    prediction_log.log_for(engine).add(
        [
            (p.model, p.version, kind, i, p.label, p.probability, p.value, actor, now, h)
            for i, p, h in predictions
        ]
    )
