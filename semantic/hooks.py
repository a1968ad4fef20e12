"""Post-ETL hook: rebuild the rollups and drop cached results after every successful run.

Imported by the ``cdms`` CLI (and by anything that runs ``etl.runner.run`` and wants the
rollups kept current). A rollup already built from the run's warehouse version is left as
it is, so a run that changed nothing costs one query per rollup.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from etl.hooks import LoadInfo, after_load, report
from semantic.rollups import build_all
from semantic.service import CACHE
from semantic.validate import default_model


@after_load
def refresh_rollups(engine: Engine, info: LoadInfo) -> None:
    CACHE.clear()
    model = default_model()
    total = sum(len(c.pre_aggregations) for c in model.cubes)
    done = [0]

    def tick(name: str) -> None:
        done[0] += 1
        report("rollups", done[0], total)

    report("rollups", 0, total)
    build_all(engine, model, force=info.mode == "full", on_done=tick)
