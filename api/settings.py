"""Application settings, read once from ``CDMS_*`` environment variables into typed objects
(pydantic-settings): a wrong value — ``CDMS_TRAIN_ON_START=flase``, a port that is not a
number — stops the start with one ``error[CONFIG]`` naming every wrong variable.

Every variable is documented in ``.env.example``; the database's own are in db/config.py,
the prediction log's in ml/prediction_log.py, the security ones are read here and shaped
by api/security.py.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from db.config import DbSettings, EnvSettings, read_env
from db.errors import ConfigError
from ml.prediction_log import LogSettings

if TYPE_CHECKING:
    from etl.scheduler import Schedule

Seconds = float


_ORIGIN = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[^/\s:,\[\]]+)(:\d{1,5})?")


class Settings(EnvSettings):
    env: Literal["development", "production", "test"] = Field(
        "development", validation_alias="CDMS_ENV"
    )
    host: str = Field("127.0.0.1", validation_alias="CDMS_HOST")
    port: int = Field(8000, ge=0, le=65535, validation_alias="CDMS_PORT")
    workers: int = Field(1, ge=1, le=64, validation_alias="CDMS_WORKERS")
    demo_customers: int = Field(2_000, ge=0, validation_alias="CDMS_DEMO_CUSTOMERS")
    demo_orders: int = Field(20_000, ge=0, validation_alias="CDMS_DEMO_ORDERS")
    demo_seed: int = Field(42, validation_alias="CDMS_DEMO_SEED")
    max_body_bytes: int = Field(1_000_000, ge=1, validation_alias="CDMS_MAX_BODY_BYTES")
    # a request's head (request line and headers) and the time it and the body may take
    # to arrive (api/connection.py, api/http.py)
    max_header_bytes: int = Field(65_536, ge=1_024, validation_alias="CDMS_MAX_HEADER_BYTES")
    header_timeout_s: Seconds = Field(10.0, gt=0, validation_alias="CDMS_HEADER_TIMEOUT_SECONDS")
    # an HTTP answer its client takes nothing of for this long: the connection is reset
    send_timeout_s: Seconds = Field(30.0, gt=0, validation_alias="CDMS_SEND_TIMEOUT_SECONDS")
    body_timeout_s: Seconds = Field(30.0, gt=0, validation_alias="CDMS_BODY_TIMEOUT_SECONDS")
    # the time a WebSocket message may wait for the client to read (api/ws.py): past it
    # the socket is closed (4408)
    ws_send_timeout_s: Seconds = Field(30.0, gt=0, validation_alias="CDMS_WS_SEND_TIMEOUT_SECONDS")
    # the pipeline's schedule while serving (etl/scheduler.py)
    etl_mode: Literal["continuous", "interval", "off"] = Field(
        "continuous", validation_alias="CDMS_ETL_MODE"
    )
    etl_interval_s: Seconds = Field(60.0, validation_alias="CDMS_ETL_INTERVAL")
    etl_min_interval_s: Seconds = Field(1.0, validation_alias="CDMS_ETL_MIN_INTERVAL")
    etl_max_interval_s: Seconds = Field(30.0, validation_alias="CDMS_ETL_MAX_INTERVAL")
    # the nice value of the pipeline's process (api/pipeline_process.py)
    etl_nice: int = Field(10, ge=0, le=19, validation_alias="CDMS_ETL_NICE")
    # minutes a customer key's unpaid order holds its stock before it is cancelled (0:
    # never; db/holds.py, run by the pipeline's process)
    hold_stock_minutes: int = Field(
        60, ge=0, le=525_600, validation_alias="CDMS_HOLD_STOCK_MINUTES"
    )
    # `cdms serve` trains missing models in the background (None: yes, but never in
    # production, where `cdms ml train` is a job)
    train_on_start_env: bool | None = Field(None, validation_alias="CDMS_TRAIN_ON_START")
    bi_role: str = Field("cdms_bi", validation_alias="CDMS_BI_ROLE")  # cdms bi publish
    bi_password: str | None = Field(None, validation_alias="CDMS_BI_PASSWORD")
    # authentication and request limits (shaped into api.security.SecurityConfig)
    demo_open: bool = Field(False, validation_alias="CDMS_DEMO_OPEN")
    jwt_secret: str | None = Field(None, min_length=32, validation_alias="CDMS_JWT_SECRET")
    jwt_leeway_s: Seconds = Field(30.0, ge=0, validation_alias="CDMS_JWT_LEEWAY_SECONDS")
    jwt_audience: str | None = Field(None, validation_alias="CDMS_JWT_AUDIENCE")
    jwt_issuer: str | None = Field(None, validation_alias="CDMS_JWT_ISSUER")
    jwt_max_lifetime_s: Seconds = Field(
        400 * 86_400.0, ge=0, validation_alias="CDMS_JWT_MAX_LIFETIME_SECONDS"
    )
    cors_origins: str = Field("", validation_alias="CDMS_CORS_ORIGINS")
    demo_hosts: str = Field("", validation_alias="CDMS_DEMO_HOSTS")
    rate_limit: str | None = Field(None, validation_alias="CDMS_RATE_LIMIT")
    persisted_only: bool = Field(False, validation_alias="CDMS_PERSISTED_ONLY")
    max_query_cost: int = Field(50_000, ge=1, validation_alias="CDMS_MAX_QUERY_COST")
    apikey_cache_s: Seconds = Field(5.0, ge=0, validation_alias="CDMS_APIKEY_CACHE_SECONDS")
    cube_sql: bool | None = Field(None, validation_alias="CDMS_CUBE_SQL")  # None: not in prod
    # retired settings: still typed, so a wrong value stops the start as any other's would
    # (an old env file's typo is caught), and `cdms serve` warns that they do nothing
    compiled_reads: bool | None = Field(None, validation_alias="CDMS_COMPILED_READS")

    @classmethod
    def from_env(cls) -> Settings:
        """These settings, the database's and the prediction log's, all read now: one
        ConfigError names every wrong variable of the three."""
        wrong: list[str] = []
        found: list[Any] = []
        for model in (cls, DbSettings, LogSettings):
            try:
                found.append(read_env(model))
            except ConfigError as exc:
                wrong.append(exc.message)
        if wrong:
            raise ConfigError("; ".join(wrong))
        settings, db, log = found
        read: Settings = settings.model_copy(
            update={"db": db, "prediction_log_days": log.retention_days}
        )
        return read

    @cached_property
    def db(self) -> DbSettings:
        return DbSettings.from_env()

    @cached_property
    def prediction_log_days(self) -> int:
        return LogSettings.from_env().retention_days

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def train_on_start(self) -> bool:
        return (not self.production) if self.train_on_start_env is None else self.train_on_start_env

    @property
    def rate(self) -> tuple[float, int]:
        """``CDMS_RATE_LIMIT`` as (requests/s, burst): ``RATE[,BURST]``, 0 turns it off;
        unset: 50,100 in production, off elsewhere."""
        return _rate(self.rate_limit, self.production)

    @field_validator(
        "etl_interval_s",
        "etl_min_interval_s",
        "etl_max_interval_s",
        "jwt_leeway_s",
        "jwt_max_lifetime_s",
        "apikey_cache_s",
        "header_timeout_s",
        "send_timeout_s",
        "body_timeout_s",
        "ws_send_timeout_s",
    )
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @field_validator("bi_role")
    @classmethod
    def _role(cls, role: str) -> str:
        from semantic.bi import check_role_name

        try:
            check_role_name(role)
        except ConfigError as exc:  # a ValueError, so the other wrong variables are named too
            raise ValueError(exc.message) from None
        return role

    @property
    def schedule(self) -> Schedule:
        """The pipeline's schedule while serving (etl/scheduler.py checks it)."""
        from etl.scheduler import Mode, Schedule

        return Schedule(
            Mode(self.etl_mode),
            self.etl_interval_s,
            self.etl_min_interval_s,
            self.etl_max_interval_s,
        )

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, raw: str) -> str:
        """Origins as a browser sends them: scheme://host[:port], no path (an entry with a
        slash or no scheme would match no request, silently)."""
        for entry in (o.strip() for o in raw.split(",")):
            if entry and entry != "*" and not _ORIGIN.fullmatch(entry):
                raise ValueError(
                    "CDMS_CORS_ORIGINS must list origins such as https://shop.example.com"
                    f" (scheme://host[:port], no path), got {entry[:64]!r}"
                )
        return raw

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit(cls, raw: str | None) -> str | None:
        _rate(raw, production=False)  # its own field: named beside the other wrong ones
        return raw

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        self.schedule  # noqa: B018  (its ValueError names the variables)
        if self.demo_open and self.production:
            raise ValueError(
                "CDMS_DEMO_OPEN=1 (a request without a token is the admin) is for the local"
                " demo and is refused with CDMS_ENV=production: unset one of them"
            )
        return self


# CDMS_* names that are not the server's: the example clients' (examples/), the deployment's
# (deploy/: image build arguments, database passwords), CI's and the tests' own switches
ELSEWHERE = frozenset(
    {
        "CDMS_URL", "CDMS_TOKEN",
        "CDMS_EXTRAS", "CDMS_EXTRAS_TRAIN", "CDMS_DB_PASSWORD",
        "CDMS_PG_SUPERUSER_PASSWORD", "CDMS_PG_REPLICATION_PASSWORD", "CDMS_PG_REWIND_PASSWORD",
        "CDMS_PATRONI_API_PASSWORD", "CDMS_HAPROXY_STATS_PASSWORD",
        "CDMS_CI_DATABASE_URL", "CDMS_PG_BIN", "CDMS_CHROMIUM", "CDMS_UPDATE_SNAPSHOTS",
    }
)  # fmt: skip


# retired variable -> why it no longer does anything
RETIRED = {
    "CDMS_COMPILED_READS": "every read runs on the one read executor (the Strawberry read"
    " path it switched to is gone)",
}


def retired_variables(environ: Mapping[str, str]) -> list[str]:
    """The retired ``CDMS_*`` variables of ``environ``, each with why it does nothing."""
    return [
        f"{name} no longer does anything: {why}" for name, why in RETIRED.items() if name in environ
    ]


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """The ``CDMS_*`` variables of ``environ`` that nothing reads, each with the known name
    it is most likely a typo of (``cdms serve`` warns about them: a misspelt name would
    otherwise silently mean the default)."""
    known = {
        str(f.validation_alias)
        for model in (Settings, DbSettings, LogSettings)
        for f in model.model_fields.values()
        if isinstance(f.validation_alias, str)
    }
    out = []
    for name in sorted(n for n in environ if n.startswith("CDMS_") and n not in known | ELSEWHERE):
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        out.append(f"{name} (did you mean {close[0]}?)" if close else name)
    return out


MIN_RATE, MAX_RATE = 0.01, 1_000_000.0  # operations/s of CDMS_RATE_LIMIT (0: off)
MAX_BURST = 1_000_000


def _rate(raw: str | None, production: bool) -> tuple[float, int]:
    if raw is None or not raw.strip():
        return (50.0, 100) if production else (0.0, 0)
    head, _, tail = raw.partition(",")
    try:
        rate = float(head)
        burst = int(tail) if tail.strip() else max(1, math.ceil(min(rate, MAX_RATE) * 2))
    except (ValueError, OverflowError):
        raise ValueError(f"CDMS_RATE_LIMIT must be RATE[,BURST], got {raw!r}") from None
    if not math.isfinite(rate) or rate < 0 or burst < 0 or (rate > 0 and burst < 1):
        raise ValueError(f"CDMS_RATE_LIMIT must be positive, got {raw!r}")
    # a rate of 1e-300 made the next 429 say Retry-After in 301 digits
    if rate > 0 and not MIN_RATE <= rate <= MAX_RATE:
        raise ValueError(
            f"CDMS_RATE_LIMIT's rate must be {MIN_RATE:g} to {MAX_RATE:.0f}, got {raw!r}"
        )
    if rate > 0 and burst > MAX_BURST:
        raise ValueError(f"CDMS_RATE_LIMIT's burst must be 1 to {MAX_BURST}, got {raw!r}")
    return rate, burst
