"""The model registry, ``ml.model_version``: register, list, activate, read active versions.

Activation validates the version first (its bytes load in onnxruntime, its inputs match
the spec, its sha256 matches: ``ml.scorer.load``); a refused version leaves the active
one in place. ``ml.activate_model`` switches the flags in one statement and its trigger
NOTIFYs ``cdms_model_activated``. No scikit-learn here: the server uses this module.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from db.engine import transaction
from db.errors import NotFoundError
from ml import scorer
from ml.errors import InvalidModelError
from ml.specs import SPECS, ModelSpec, spec

if TYPE_CHECKING:
    from ml.train import TrainedModel

log = logging.getLogger("cdms.ml")

_COLUMNS = """name, version, algorithm, sha256, features, classes, metrics,
    feature_importances, train_from, train_until, test_until, row_count, test_row_count,
    trained_at, active, activated_at, octet_length(onnx) AS size_bytes"""

_LIST = sa.text(
    f"SELECT {_COLUMNS} FROM ml.model_version"
    " WHERE (CAST(:name AS text) IS NULL OR name = CAST(:name AS text))"
    " ORDER BY name, version DESC"
)
_ONE = sa.text(
    "SELECT name, version, onnx, sha256, features, classes FROM ml.model_version"
    " WHERE name = :name AND version = :version FOR UPDATE"
)
_ACTIVE_BYTES = sa.text(
    "SELECT name, version, onnx, sha256, features, classes FROM ml.model_version"
    " WHERE active AND (CAST(:name AS text) IS NULL OR name = CAST(:name AS text))"
)
_ACTIVE_VERSIONS = sa.text(
    "SELECT name, version FROM ml.model_version"
    " WHERE active AND (CAST(:name AS text) IS NULL OR name = CAST(:name AS text))"
)
_ACTIVE_METRICS = sa.text(
    "SELECT version, metrics FROM ml.model_version WHERE name = :name AND active"
)
_LOCK = sa.text("SELECT pg_advisory_xact_lock(hashtext('cdms_model:' || :name))")
_NEXT = sa.text("SELECT coalesce(max(version), 0) + 1 FROM ml.model_version WHERE name = :name")
_INSERT = sa.text(
    """INSERT INTO ml.model_version (name, version, algorithm, onnx, sha256, features, classes,
        metrics, feature_importances, train_from, train_until, test_until, row_count,
        test_row_count)
    VALUES (:name, :version, :algorithm, :onnx, :sha256, CAST(:features AS jsonb),
        CAST(:classes AS jsonb), CAST(:metrics AS jsonb), CAST(:importances AS jsonb),
        :train_from, :train_until, :test_until, :row_count, :test_row_count)"""
)
_ACTIVATE = sa.text("SELECT version FROM ml.activate_model(:name, :version)")


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: int
    algorithm: str
    sha256: str
    features: list[dict[str, str]]
    classes: list[str] | None
    metrics: dict[str, float | None]
    feature_importances: list[dict[str, Any]]
    train_from: dt.datetime | None
    train_until: dt.datetime | None
    test_until: dt.datetime | None
    row_count: int
    test_row_count: int
    trained_at: dt.datetime
    active: bool
    activated_at: dt.datetime | None
    size_bytes: int


@dataclass(frozen=True)
class Registered:
    name: str
    version: int
    activated: bool
    reason: str  # why it was (not) activated, for the CLI


def list_versions(conn: Connection, name: str | None = None) -> list[VersionInfo]:
    rows = conn.execute(_LIST, {"name": name}).mappings().all()
    return [
        VersionInfo(**{**r, "feature_importances": r["feature_importances"] or []}) for r in rows
    ]


def _finite(metrics: dict[str, float | None]) -> dict[str, float | None]:
    return {k: (v if v is not None and math.isfinite(v) else None) for k, v in metrics.items()}


def _better_or_equal(model: ModelSpec, new: float, old: float | None) -> bool:
    if old is None:
        return True
    return new >= old if model.higher_is_better else new <= old


def register(engine: Engine, trained: TrainedModel, *, force: bool = False) -> Registered:
    """Store ``trained`` as the next version; activate it unless it is worse than the
    active one on the headline metric (``force`` activates anyway)."""
    model = trained.spec
    metric = model.headline_metric
    with transaction(engine) as conn:
        conn.execute(_LOCK, {"name": model.name})
        version = int(conn.execute(_NEXT, {"name": model.name}).scalar_one())
        conn.execute(
            _INSERT,
            {
                "name": model.name,
                "version": version,
                "algorithm": model.algorithm,
                "onnx": trained.onnx,
                "sha256": hashlib.sha256(trained.onnx).hexdigest(),
                "features": json.dumps([f.as_json() for f in model.features]),
                "classes": None if trained.classes is None else json.dumps(trained.classes),
                "metrics": json.dumps(_finite(trained.metrics)),
                "importances": json.dumps(trained.feature_importances),
                "train_from": trained.train_from,
                "train_until": trained.train_until,
                "test_until": trained.test_until,
                "row_count": trained.row_count,
                "test_row_count": trained.test_row_count,
            },
        )
        active = conn.execute(_ACTIVE_METRICS, {"name": model.name}).mappings().first()
        new = trained.headline
        old = None if active is None else active["metrics"].get(metric)
        if active is None:
            activate_in(conn, model.name, version)
            return Registered(model.name, version, True, "no version was active")
        was = f"v{active['version']} {metric} {old:.4f}" if old is not None else "no metric"
        if _better_or_equal(model, new, old):
            activate_in(conn, model.name, version)
            return Registered(model.name, version, True, f"{metric} {new:.4f} vs {was}")
        if force:
            activate_in(conn, model.name, version)
            return Registered(
                model.name, version, True, f"forced: {metric} {new:.4f} is worse than {was}"
            )
        return Registered(
            model.name,
            version,
            False,
            f"kept v{active['version']}: {metric} {new:.4f} is worse than {was}"
            " (use --force to activate anyway)",
        )


def activate_in(conn: Connection, name: str, version: int) -> None:
    """Validate version ``version`` of ``name`` and make it the active one (in ``conn``'s
    transaction); InvalidModelError leaves everything as it was."""
    model = spec(name)
    row = conn.execute(_ONE, {"name": name, "version": version}).mappings().first()
    if row is None:
        raise NotFoundError(
            f"no model {name} version {version}", entity="model_version", id=f"{name}:{version}"
        )
    scorer.load(model, version, bytes(row["onnx"]), row["sha256"], row["features"], row["classes"])
    conn.execute(_ACTIVATE, {"name": name, "version": version})


def activate(engine: Engine, name: str, version: int) -> None:
    """``cdms ml activate``: validate, then switch (rollback to an older version too)."""
    with transaction(engine) as conn:
        activate_in(conn, name, version)


def active_versions(conn: Connection, name: str | None = None) -> dict[str, int]:
    """The active version of each model (of ``name``), without its bytes: what a server
    compares with what it holds before it loads anything."""
    return {str(n): int(v) for n, v in conn.execute(_ACTIVE_VERSIONS, {"name": name})}


def load_active(conn: Connection, name: str | None = None) -> list[scorer.Scorer]:
    """Validated scorers of the active versions (of ``name``, or of every known model).
    A version that fails validation is skipped (activation refuses such versions)."""
    out: list[scorer.Scorer] = []
    for row in conn.execute(_ACTIVE_BYTES, {"name": name}).mappings():
        model = SPECS.get(row["name"])
        if model is None:
            continue
        try:
            out.append(
                scorer.load(
                    model,
                    row["version"],
                    bytes(row["onnx"]),
                    row["sha256"],
                    row["features"],
                    row["classes"],
                )
            )
        except InvalidModelError as exc:
            log.error("not serving %s: %s", row["name"], exc)
    return out


def unregistered(conn: Connection, names: Iterable[str]) -> list[str]:
    """Those of ``names`` with no version registered, in their order."""
    have = set(conn.execute(sa.text("SELECT DISTINCT name FROM ml.model_version")).scalars())
    return [n for n in names if n not in have]
