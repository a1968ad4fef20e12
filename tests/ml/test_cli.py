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


def test_first_start_on_an_empty_warehouse_serves_without_models(
    fresh_database: Callable[[], str], capsys: pytest.CaptureFixture[str]
) -> None:
    from api.cli.ml import train_on_first_start
    from db.engine import make_engine
    from ml.serving import close_store

    url = fresh_database()
    try:
        train_on_first_start(url)
    finally:
        close_store(make_engine(url))
    out = capsys.readouterr().out
    assert "models not trained" in out and "none active" in out


def test_later_starts_do_not_retrain(
    ml_url: str,
    ml_engine: Engine,
    trained: dict[str, TrainedModel],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from api.cli.ml import train_on_first_start

    with ml_engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM ml.model_version")).scalar_one()
    train_on_first_start(ml_url)
    with ml_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ml.model_version")).scalar_one() == count
    out = capsys.readouterr().out
    assert "order_status v" in out and "order_value v" in out and "support_status v" in out
