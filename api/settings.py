"""Application settings, read once from ``CDMS_*`` environment variables.

Every variable is documented in ``.env.example``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

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
    etl_interval_s: int
    max_body_bytes: int
    workers: int = 1
    prediction_log_days: int = 90

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
            etl_interval_s=_int("CDMS_ETL_INTERVAL", 0),
            max_body_bytes=_int("CDMS_MAX_BODY_BYTES", 1_000_000),
            workers=_workers(),
            prediction_log_days=retention_days(),  # validated at start-up, not mid-request
        )


def _workers() -> int:
    n = _int("CDMS_WORKERS", 1)
    if not 1 <= n <= 64:
        raise ConfigError(f"CDMS_WORKERS must be between 1 and 64, got {n}")
    return n
