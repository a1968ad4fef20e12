"""Post-ETL hook: store the predictions of the orders and tickets the run added features for.

Imported by the ``cdms`` CLI (``api.cli.ml``), so every ``cdms`` process registers it,
``cdms serve``'s scheduled ETL included. ``ml.stored.refresh`` scores only the feature rows
without a prediction by the active version: after a run that added nothing it costs one
anti-join count per table (no model active: one registry query).
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from etl.hooks import LoadInfo, after_load
from ml.stored import refresh


@after_load
def score_new(engine: Engine, info: LoadInfo) -> None:
    refresh(engine)
