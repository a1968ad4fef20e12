"""Application settings, read once from ``CDMS_*`` environment variables.

Every variable is documented in ``.env.example``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from db.config import DbSettings
from db.errors import ConfigError
from ml.prediction_log import retention_days


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


@dataclass(frozen=True)
class Settings:
    db: DbSettings
    host: str
    port: int
    env: str
    demo_customers: int
    demo_orders: int
    demo_seed: int
    max_body_bytes: int
    workers: int = 1
    prediction_log_days: int = 90
    etl_mode: str = "continuous"  # continuous | interval | off
    etl_interval_s: float = 60.0  # interval mode: seconds between runs
    etl_min_interval_s: float = 1.0  # continuous: least time from the end of a run to the next
    etl_max_interval_s: float = 30.0  # continuous: longest without a look; longest back-off
    # `cdms serve` trains missing models in the background (never in production by default:
    # there `cdms ml train` is a job)
    train_on_start: bool = True
    bi_role: str = "cdms_bi"  # the BI tools' login role (cdms bi publish)
    bi_password: str | None = None  # its password (None: no password login)

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ.get("CDMS_ENV", "development")
        if env not in {"development", "production", "test"}:
            raise ConfigError(f"CDMS_ENV must be development, production or test, got {env!r}")
        return cls(
            db=DbSettings.from_env(),
            host=os.environ.get("CDMS_HOST", "127.0.0.1"),
            port=_int("CDMS_PORT", 8000),
            env=env,
            demo_customers=_int("CDMS_DEMO_CUSTOMERS", 2_000),
            demo_orders=_int("CDMS_DEMO_ORDERS", 20_000),
            demo_seed=_int("CDMS_DEMO_SEED", 42),
            max_body_bytes=_int("CDMS_MAX_BODY_BYTES", 1_000_000),
            workers=_workers(),
            train_on_start=_bool("CDMS_TRAIN_ON_START", env != "production"),
            prediction_log_days=retention_days(),  # validated at start-up, not mid-request
            **_etl(),
            **_bi(),
        )


def _bi() -> dict[str, Any]:
    """The login role BI tools connect as (``cdms bi publish``, ``docs/bi.md``)."""
    from semantic.bi import check_role_name

    role = os.environ.get("CDMS_BI_ROLE") or "cdms_bi"
    check_role_name(role)
    return {"bi_role": role, "bi_password": os.environ.get("CDMS_BI_PASSWORD") or None}


def _etl() -> dict[str, Any]:
    """The pipeline's schedule while serving (etl/scheduler.py)."""
    mode = os.environ.get("CDMS_ETL_MODE", "continuous") or "continuous"
    if mode not in {"continuous", "interval", "off"}:
        raise ConfigError(f"CDMS_ETL_MODE must be continuous, interval or off, got {mode!r}")
    interval = _float("CDMS_ETL_INTERVAL", 60.0)
    floor = _float("CDMS_ETL_MIN_INTERVAL", 1.0)
    ceiling = _float("CDMS_ETL_MAX_INTERVAL", 30.0)
    if mode == "interval" and not interval > 0:
        raise ConfigError(
            f"CDMS_ETL_INTERVAL must be positive with CDMS_ETL_MODE=interval, got {interval:g}"
            " (CDMS_ETL_MODE=off turns the scheduled loads off)"
        )
    if not 0 < floor <= ceiling:
        raise ConfigError(
            "CDMS_ETL_MIN_INTERVAL must be positive and at most CDMS_ETL_MAX_INTERVAL,"
            f" got {floor:g} and {ceiling:g}"
        )
    return {
        "etl_mode": mode,
        "etl_interval_s": interval,
        "etl_min_interval_s": floor,
        "etl_max_interval_s": ceiling,
    }


def _workers() -> int:
    n = _int("CDMS_WORKERS", 1)
    if not 1 <= n <= 64:
        raise ConfigError(f"CDMS_WORKERS must be between 1 and 64, got {n}")
    return n
