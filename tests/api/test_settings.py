"""Settings are typed and read once: a wrong value stops the start with one coded error
naming every wrong variable; a misspelt variable name is warned about."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from api.security import SecurityConfig
from api.settings import Settings, retired_variables, unknown_variables
from db.config import DbSettings
from db.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CDMS_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CDMS_TRAIN_ON_START", "flase", "CDMS_TRAIN_ON_START must be a boolean"),
        ("CDMS_DEMO_OPEN", "yess", "CDMS_DEMO_OPEN must be a boolean"),
        ("CDMS_PORT", "eighty", "CDMS_PORT must be an integer, got 'eighty'"),
        ("CDMS_PORT", "70000", "CDMS_PORT must be at most 65535, got 70000"),
        ("CDMS_WORKERS", "0", "CDMS_WORKERS must be at least 1, got 0"),
        ("CDMS_ENV", "prod", "CDMS_ENV must be development, production or test, got 'prod'"),
        ("CDMS_MAX_QUERY_COST", "lots", "CDMS_MAX_QUERY_COST must be an integer"),
        ("CDMS_APIKEY_CACHE_SECONDS", "-1", "CDMS_APIKEY_CACHE_SECONDS must be at least 0"),
        ("CDMS_JWT_LEEWAY_SECONDS", "inf", "CDMS_JWT_LEEWAY_SECONDS must be a finite number"),
        ("CDMS_RATE_LIMIT", "fast", "CDMS_RATE_LIMIT must be RATE[,BURST], got 'fast'"),
        ("CDMS_RATE_LIMIT", "10,0", "CDMS_RATE_LIMIT must be positive"),
        # a rate of 1e-300 was accepted and the next 429 said Retry-After in 301 digits
        ("CDMS_RATE_LIMIT", "1e-300,1", "CDMS_RATE_LIMIT's rate must be 0.01 to 1000000"),
        ("CDMS_RATE_LIMIT", "1e300", "CDMS_RATE_LIMIT's rate must be 0.01 to 1000000"),
        ("CDMS_RATE_LIMIT", "5,10000000000", "CDMS_RATE_LIMIT's burst must be 1 to 1000000"),
        ("CDMS_PREDICTION_LOG_DAYS", "a week", "CDMS_PREDICTION_LOG_DAYS must be an integer"),
        # make_interval's days are an int4 and now() minus them a timestamp: past a century
        # the server's pruning failed at each attempt and `cdms ml prune-log` with a traceback
        ("CDMS_PREDICTION_LOG_DAYS", "9999999", "CDMS_PREDICTION_LOG_DAYS must be at most 36500"),
        ("CDMS_DB_PREPARE", "sometimes", "CDMS_DB_PREPARE must be auto, on or off"),
        ("CDMS_CORS_ORIGINS", "not a url", "CDMS_CORS_ORIGINS must list origins"),
        ("CDMS_CORS_ORIGINS", "https://a.example/", "got 'https://a.example/'"),
        # PostgreSQL's statement_timeout takes 0 .. 2^31 - 1 ms: outside, every read failed
        ("CDMS_STATEMENT_TIMEOUT_MS", "-5", "CDMS_STATEMENT_TIMEOUT_MS must be at least 0"),
        (
            "CDMS_STATEMENT_TIMEOUT_MS",
            "99999999999",
            "CDMS_STATEMENT_TIMEOUT_MS must be at most 2147483647",
        ),
        # retired (one read path), still typed: an old env file's typo does not pass
        ("CDMS_COMPILED_READS", "flase", "CDMS_COMPILED_READS must be a boolean"),
    ],
)
def test_a_wrong_value_is_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        Settings.from_env()
    assert info.value.code == "CONFIG"
    assert message in info.value.message, info.value.message


def test_the_etl_is_continuous_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CDMS_ETL_MODE", "CDMS_ETL_INTERVAL", "CDMS_ETL_MIN_INTERVAL",
                 "CDMS_ETL_MAX_INTERVAL", "CDMS_ETL_NICE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    s = Settings.from_env()
    assert (s.etl_mode, s.etl_min_interval_s, s.etl_max_interval_s) == ("continuous", 1.0, 30.0)
    assert s.etl_nice == 10


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CDMS_ETL_MODE": "sometimes"}, "CDMS_ETL_MODE must be continuous, interval or off"),
        ({"CDMS_ETL_MODE": "interval", "CDMS_ETL_INTERVAL": "0"}, "must be positive, got 0"),
        # in the default mode too: the value is wrong whichever mode reads it
        ({"CDMS_ETL_INTERVAL": "-1"}, "CDMS_ETL_INTERVAL must be positive, got -1"),
        ({"CDMS_ETL_MIN_INTERVAL": "abc"}, "CDMS_ETL_MIN_INTERVAL must be a number"),
        ({"CDMS_ETL_MIN_INTERVAL": "0"}, "must be positive and at most CDMS_ETL_MAX_INTERVAL"),
        ({"CDMS_ETL_MIN_INTERVAL": "5", "CDMS_ETL_MAX_INTERVAL": "2"}, "at most"),
        # beyond what a timer can wait: the scheduler's thread died at its first wait
        ({"CDMS_ETL_MODE": "interval", "CDMS_ETL_INTERVAL": "1e10"}, r"a year\), got 10000000000$"),
        ({"CDMS_ETL_MAX_INTERVAL": "1e300"}, r"at most 31536000 \(a year\), got 1e\+300$"),
        ({"CDMS_ETL_INTERVAL": "-1e-9"}, r"must be positive, got -1e-09 "),
        ({"CDMS_ETL_MIN_INTERVAL": "1e12", "CDMS_ETL_MAX_INTERVAL": "1e12"}, "at most 31536000"),
        ({"CDMS_ETL_NICE": "20"}, "CDMS_ETL_NICE must be at most 19"),
        ({"CDMS_ETL_NICE": "-5"}, "CDMS_ETL_NICE must be at least 0"),
        ({"CDMS_ETL_NICE": "low"}, "CDMS_ETL_NICE must be"),
    ],
)
def test_bad_etl_schedules_fail_at_start_up(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        Settings.from_env()


def test_every_wrong_variable_is_listed_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDMS_PORT", "x")
    monkeypatch.setenv("CDMS_PERSISTED_ONLY", "maybe")
    monkeypatch.setenv("CDMS_ETL_MODE", "hourly")
    monkeypatch.setenv("CDMS_DB_MAX_OVERFLOW", "-2")  # the database's own settings
    monkeypatch.setenv("CDMS_PREDICTION_LOG_DAYS", "soon")  # the prediction log's
    with pytest.raises(ConfigError) as info:
        Settings.from_env()
    for name in ("CDMS_PORT", "CDMS_PERSISTED_ONLY", "CDMS_ETL_MODE", "CDMS_DB_MAX_OVERFLOW",
                 "CDMS_PREDICTION_LOG_DAYS"):  # fmt: skip
        assert name in info.value.message


def test_a_short_jwt_secret_is_refused_without_repeating_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CDMS_JWT_SECRET", "hunter2-hunter2")
    with pytest.raises(ConfigError) as info:
        SecurityConfig.from_env()
    assert "CDMS_JWT_SECRET must have at least 32 characters" in info.value.message
    assert "hunter2" not in info.value.message


def test_demo_open_is_refused_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    """Probe 13 (M4): ``CDMS_DEMO_OPEN=1`` (no token is the admin) was taken together with
    ``CDMS_ENV=production``, silently."""
    monkeypatch.setenv("CDMS_ENV", "production")
    monkeypatch.setenv("CDMS_DEMO_OPEN", "1")
    with pytest.raises(ConfigError) as info:
        Settings.from_env()
    assert info.value.code == "CONFIG"
    assert "CDMS_DEMO_OPEN" in info.value.message and "CDMS_ENV=production" in info.value.message
    monkeypatch.setenv("CDMS_DEMO_OPEN", "0")
    assert Settings.from_env().production
    monkeypatch.setenv("CDMS_DEMO_OPEN", "1")
    monkeypatch.setenv("CDMS_ENV", "development")
    assert Settings.from_env().demo_open


def test_values_are_typed_and_empty_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDMS_PORT", "")
    monkeypatch.setenv("CDMS_DEMO_OPEN", "yes")
    monkeypatch.setenv("CDMS_RATE_LIMIT", "5")
    monkeypatch.setenv("CDMS_CORS_ORIGINS", "https://a.example, http://[::1]:8000")
    monkeypatch.setenv("CDMS_CUBE_SQL", "off")
    s = Settings.from_env()
    assert s.port == 8000 and s.demo_open is True
    security = SecurityConfig.of(s)
    assert (security.rate_per_s, security.burst) == (5.0, 10)
    assert security.cors_origins == ("https://a.example", "http://[::1]:8000")
    assert security.show_cube_sql is False
    monkeypatch.setenv("CDMS_ENV", "production")
    monkeypatch.delenv("CDMS_RATE_LIMIT")
    monkeypatch.delenv("CDMS_DEMO_OPEN")  # (refused in production)
    prod = SecurityConfig.from_env()
    assert prod.production and (prod.rate_per_s, prod.burst) == (50.0, 100)


def test_misspelt_names_are_found_with_the_likely_one() -> None:
    found = unknown_variables(
        {"CDMS_ETL_MOD": "off", "CDMS_PORT": "1", "CDMS_SOMETHING_ELSE": "1", "PATH": "/",
         "CDMS_URL": "http://x", "CDMS_TOKEN": "t", "CDMS_DB_PASSWORD": "p"}  # not the server's
    )  # fmt: skip
    assert found == ["CDMS_ETL_MOD (did you mean CDMS_ETL_MODE?)", "CDMS_SOMETHING_ELSE"]


def test_cdms_serve_warns_of_a_misspelt_name_and_stops_on_a_wrong_value() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDMS_")}
    env.update(CDMS_TRAIN_ON_STRAT="0", CDMS_TRAIN_ON_START="flase")
    done = subprocess.run(
        [sys.executable, "-c", "from api.cli import main; main()", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1, done
    assert "CDMS_TRAIN_ON_STRAT (did you mean CDMS_TRAIN_ON_START?)" in done.stdout + done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("error[CONFIG]: CDMS_TRAIN_ON_START must be a boolean")
    ), done.stderr


def test_a_setting_is_read_from_its_documented_name_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each setting has one variable (.env.example): a variable spelt as the field's Python
    name (``port``, ``demo_open``, ``database_url``) is nobody's setting, not a second way
    to open the API or point it at another database."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    for name, value in {
        "port": "1234",
        "demo_open": "1",
        "env": "production",
        "jwt_secret": "s" * 40,
        "persisted_only": "1",
        "database_url": "postgresql://elsewhere.example/cdms",
        "pool_size": "3",
        "read_urls": "postgresql://replica.example/cdms",
        "retention_days": "1",
    }.items():
        monkeypatch.setenv(name, value)
    s = Settings.from_env()
    assert (s.port, s.demo_open, s.env, s.jwt_secret, s.persisted_only) == (
        8000, False, "development", None, False,
    )  # fmt: skip
    assert (s.db.database_url, s.db.pool_size, s.db.read_urls) == (None, 16, ())
    assert s.prediction_log_days == 90
    # constructed in code by field name still works
    assert DbSettings(database_url="postgresql://h/db").database_url == "postgresql://h/db"


def test_a_wrong_bi_role_does_not_hide_the_other_wrong_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CDMS_BI_ROLE", "Not A Role")
    monkeypatch.setenv("CDMS_PORT", "eighty")
    monkeypatch.setenv("CDMS_ETL_MODE", "hourly")
    with pytest.raises(ConfigError) as info:
        Settings.from_env()
    for name in ("CDMS_BI_ROLE", "CDMS_PORT", "CDMS_ETL_MODE"):
        assert name in info.value.message, info.value.message


def test_a_wrong_rate_limit_is_named_beside_the_other_wrong_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CDMS_RATE_LIMIT", "fast")
    monkeypatch.setenv("CDMS_PORT", "eighty")
    with pytest.raises(ConfigError) as info:
        Settings.from_env()
    assert "CDMS_RATE_LIMIT must be RATE[,BURST], got 'fast'" in info.value.message
    assert "CDMS_PORT must be an integer" in info.value.message


def test_a_retired_variable_with_a_right_value_is_named_as_doing_nothing() -> None:
    said = retired_variables({"CDMS_COMPILED_READS": "false", "CDMS_PORT": "8000"})
    assert len(said) == 1 and said[0].startswith("CDMS_COMPILED_READS no longer does anything")
    assert unknown_variables({"CDMS_COMPILED_READS": "false"}) == []  # (not also "unknown")


def test_lower_priority_raises_the_nice_value_and_never_lowers_it() -> None:
    """In a child process (a nice value cannot be lowered again without privilege)."""
    own = os.nice(0)  # (the runner may be niced itself)
    if own >= 18:
        pytest.skip("the runner's nice value leaves no room to raise it")
    up = own + 2
    code = (
        "import os\n"
        "from api.pipeline_process import lower_priority\n"
        "lower_priority(0); a = os.nice(0)\n"
        f"lower_priority({up}); b = os.nice(0)\n"
        f"lower_priority({own}); c = os.nice(0)\n"
        "print(a, b, c)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.split() == [str(own), str(up), str(up)]
