"""Post-ETL hook: store the predictions of the orders and tickets the run added features for.

Imported by the ``cdms`` CLI (``api.cli.ml``), so every ``cdms`` process registers it,
``cdms serve``'s scheduled ETL included. ``ml.stored.refresh`` scores only the feature rows
without a prediction by the active version. An incremental run that changed nothing added
no features, so it is skipped (its counts cost 0.3 s at 200k orders, ~4x the run); a row
missing for another reason (an activation by a process that did not refresh) is scored by
the next run that changes something, ``cdms serve``'s start-up or ``cdms ml score``, and
served on request meanwhile.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from etl.hooks import LoadInfo, after_load, report
from ml.stored import refresh


@after_load
def score_new(engine: Engine, info: LoadInfo) -> None:
    if info.changed or info.mode == "full":
        refresh(engine, progress=lambda table, done, total: report(f"scoring {table}", done, total))
