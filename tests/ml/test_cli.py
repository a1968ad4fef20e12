"""``cdms ml train/list/activate`` as a user runs them, and the serve start-up step."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ml.train import TrainedModel
from tests.cli import run_cdms

ROOT = Path(__file__).resolve().parents[2]


def cdms(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDMS_")}
    env.update(DATABASE_URL=url, COLUMNS="200")
    return run_cdms(env, *args, timeout=300, cwd=ROOT)


def _active(engine: Engine, name: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT version FROM ml.model_version WHERE name = :n AND active"),
                {"n": name},
            ).scalar_one()
        )


def test_train_list_and_rollback_through_the_cli(
    ml_url: str, ml_engine: Engine, trained: dict[str, TrainedModel]
) -> None:
    before = _active(ml_engine, "support_status")
    out = cdms(ml_url, "ml", "train", "--model", "support_status")
    assert out.returncode == 0, out.stderr
    assert "support_status v" in out.stdout and "activated" in out.stdout
    assert "macro_f1" in out.stdout and "baseline" in out.stdout
    new = _active(ml_engine, "support_status")
    assert new > before
    listed = cdms(ml_url, "ml", "list", "--model", "support_status")
    assert listed.returncode == 0, listed.stderr
    assert f"{new}" in listed.stdout and "LogisticRegression" in listed.stdout
    back = cdms(ml_url, "ml", "activate", "support_status", str(before))
    assert back.returncode == 0, back.stderr
    assert _active(ml_engine, "support_status") == before


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("ml", "train", "--model", "nope"), "error[BAD_USER_INPUT]: unknown model 'nope'"),
        (("ml", "activate", "order_status", "999"), "error[NOT_FOUND]: no model order_status"),
        (("ml", "activate", "nope", "1"), "error[BAD_USER_INPUT]: unknown model 'nope'"),
    ],
)
def test_cli_failures_are_one_line(
    ml_url: str, trained: dict[str, TrainedModel], args: tuple[str, ...], line: str
) -> None:
    out = cdms(ml_url, *args)
    assert out.returncode == 1
    assert out.stderr.strip().startswith(line), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def _stored(engine: Engine, model: str) -> list[tuple[int, int]]:
    """(id, version) of ``model``'s stored predictions of orders or tickets (not customers':
    order_value is stored for both)."""
    with engine.connect() as conn:
        return [
            (int(r[0]), int(r[1]))
            for r in conn.execute(
                sa.text(
                    "SELECT id, version FROM ml.stored_predictions"
                    " WHERE model = :m AND kind <> 'customer' ORDER BY 1"
                ),
                {"m": model},
            )
        ]


def test_score_stores_every_prediction_once(
    ml_url: str, ml_engine: Engine, trained: dict[str, TrainedModel]
) -> None:
    out = cdms(ml_url, "ml", "score")
    assert out.returncode == 0, out.stderr
    assert "scoring ml.order_predictions" in out.stdout and "written in" in out.stdout
    with ml_engine.connect() as conn:
        orders = conn.execute(sa.text("SELECT count(*) FROM ml.order_features")).scalar_one()
    assert len(_stored(ml_engine, "order_value")) == orders
    again = cdms(ml_url, "ml", "score", "--model", "order_value")
    assert again.returncode == 0, again.stderr
    assert "ml.order_predictions 0 predictions" in again.stdout


def test_score_of_an_unknown_model_is_one_line(
    ml_url: str, trained: dict[str, TrainedModel]
) -> None:
    out = cdms(ml_url, "ml", "score", "--model", "bogus")
    assert out.returncode == 1
    assert out.stderr.strip().startswith("error[BAD_USER_INPUT]: unknown model 'bogus'")
    assert len(out.stderr.strip().splitlines()) == 1


def test_train_and_activate_store_the_new_versions_predictions(
    fresh_database: Callable[[], str], trained: dict[str, TrainedModel]
) -> None:
    from db.engine import make_engine
    from db.seed import seed
    from etl import pipeline, runner
    from ml.registry import register
    from ml.serving import close_store

    url = fresh_database()
    seed(url, 150, 1_500, 4)
    pipeline.run(url)
    runner.dispose(url)
    engine = make_engine(url)
    try:
        assert register(engine, trained["support_status"]).activated  # v1, nothing stored
        # v1 was evaluated on another shop: make it the worst possible so v2 always wins
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE ml.model_version SET metrics = jsonb_set(metrics, '{macro_f1}', '0')"
                    " WHERE name = 'support_status' AND active"
                )
            )
        out = cdms(url, "ml", "train", "--model", "support_status")
        assert out.returncode == 0, out.stderr
        assert "storing the predictions of support_status" in out.stdout
        v2 = _stored(engine, "support_status")
        assert v2 and {v for _, v in v2} == {2}
        # a worse version is not activated, and scores nothing
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE ml.model_version SET metrics = jsonb_set(metrics, '{macro_f1}', '1')"
                    " WHERE name = 'support_status' AND active"
                )
            )
        worse = cdms(url, "ml", "train", "--model", "support_status")
        assert worse.returncode == 0, worse.stderr
        assert "not activated" in worse.stdout and "stored predictions unchanged" in worse.stdout
        assert _stored(engine, "support_status") == v2
        back = cdms(url, "ml", "activate", "support_status", "1")
        assert back.returncode == 0, back.stderr
        assert "ml.ticket_predictions" in back.stdout and "written in" in back.stdout
        assert _stored(engine, "support_status") == [(i, 1) for i, _ in v2]
    finally:
        close_store(engine)


def test_serve_start_up_stores_what_is_missing(
    ml_url: str,
    ml_engine: Engine,
    trained: dict[str, TrainedModel],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from api.cli.ml import score_stored

    score_stored(ml_engine)
    with ml_engine.begin() as conn:
        deleted = conn.execute(
            sa.text("DELETE FROM ml.ticket_predictions WHERE ticket_id % 2 = 0")
        ).rowcount
        tickets = conn.execute(sa.text("SELECT count(*) FROM ml.ticket_features")).scalar_one()
    assert deleted > 0
    capsys.readouterr()
    score_stored(ml_engine)
    out = capsys.readouterr().out
    assert (
        f"ml.order_predictions 0 predictions, ml.ticket_predictions {deleted:,} predictions" in out
    )
    assert len(_stored(ml_engine, "support_status")) == tickets
    score_stored(ml_engine)
    out = capsys.readouterr().out
    assert "ml.order_predictions 0 predictions, ml.ticket_predictions 0 predictions" in out
