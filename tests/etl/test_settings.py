"""The pipeline's schedule is read once from CDMS_ETL_*; a bad value fails at start-up."""

from __future__ import annotations

import pytest

from api.settings import Settings
from db.errors import ConfigError


def test_continuous_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CDMS_ETL_MODE", "CDMS_ETL_INTERVAL", "CDMS_ETL_MIN_INTERVAL",
                 "CDMS_ETL_MAX_INTERVAL"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    s = Settings.from_env()
    assert (s.etl_mode, s.etl_min_interval_s, s.etl_max_interval_s) == ("continuous", 1.0, 30.0)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CDMS_ETL_MODE": "sometimes"}, "CDMS_ETL_MODE must be continuous, interval or off"),
        ({"CDMS_ETL_MODE": "interval", "CDMS_ETL_INTERVAL": "0"}, "must be positive with"),
        ({"CDMS_ETL_MIN_INTERVAL": "abc"}, "CDMS_ETL_MIN_INTERVAL must be a number"),
        ({"CDMS_ETL_MIN_INTERVAL": "0"}, "must be positive and at most CDMS_ETL_MAX_INTERVAL"),
        ({"CDMS_ETL_MIN_INTERVAL": "5", "CDMS_ETL_MAX_INTERVAL": "2"}, "at most"),
    ],
)
def test_bad_values_fail_at_start_up(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        Settings.from_env()


def test_a_bad_mode_is_a_one_line_config_error_of_cdms_serve(tmp_path: object) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("CDMS_")}
    env["CDMS_ETL_MODE"] = "sometimes"
    done = subprocess.run(
        [sys.executable, "-c", "from api.cli import main; main()", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode != 0
    assert done.stderr.strip().startswith("error[CONFIG]: CDMS_ETL_MODE must be"), done.stderr
