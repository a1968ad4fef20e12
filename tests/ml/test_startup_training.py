"""A start trains the models that have no version, not all or nothing: a first start
stopped while training (Ctrl-C, a redeploy) leaves some registered, and the next start
trains the rest instead of serving MODEL_UNAVAILABLE for them until someone runs
`cdms ml train`."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from api.startup import Background
from db.engine import make_engine
from ml.registry import register
from ml.serving import close_store
from ml.specs import SPECS
from ml.train import train
from tests.ml.conftest import shop_warehouse


def test_a_start_after_training_was_stopped_trains_only_the_missing_models(
    clone_database: Callable[[str], str],
) -> None:
    url = shop_warehouse(clone_database, "startup_models")
    engine = make_engine(url)
    try:
        first = SPECS["order_status"]
        register(engine, train(engine, first))  # where the stopped first start got to
        lines: list[str] = []
        Background(url, train=True, report=lines.append)._models()
        with engine.connect() as conn:
            versions = dict(
                conn.execute(
                    sa.text("SELECT name, count(*) FROM ml.model_version GROUP BY name")
                ).all()
            )
        assert versions == {name: 1 for name in SPECS}, (versions, lines)
        assert any("training in the background" in line for line in lines), lines
    finally:
        close_store(engine)
