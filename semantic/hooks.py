"""Post-ETL hook: rebuild the rollups and drop cached results after every successful run.

Imported by the ``cdms`` CLI (and by anything that runs ``etl.runner.run`` and wants the
rollups kept current). A rollup already built from the run's warehouse version is left as
it is, so a run that changed nothing costs one query per rollup.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from etl.hooks import LoadInfo, after_load
from semantic.rollups import build_all
from semantic.service import CACHE
from semantic.validate import default_model


@after_load
def refresh_rollups(engine: Engine, info: LoadInfo) -> None:
    CACHE.clear()
    build_all(engine, default_model(), force=info.mode == "full")
