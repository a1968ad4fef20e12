"""Database settings, read once from the environment.

``DATABASE_URL``   use this server (``postgresql://user@host:port/db``); unset: embedded.
``CDMS_DATA_DIR``  folder for the embedded server and local state (default ``./.cdms``).
``CDMS_STATEMENT_TIMEOUT_MS``  per-statement timeout for API requests (default 15000).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DbSettings:
    database_url: str | None
    data_dir: Path
    statement_timeout_ms: int

    @classmethod
    def from_env(cls) -> DbSettings:
        from db.errors import ConfigError

        raw_timeout = os.environ.get("CDMS_STATEMENT_TIMEOUT_MS", "15000")
        try:
            timeout = int(raw_timeout)
        except ValueError:
            raise ConfigError(
                f"CDMS_STATEMENT_TIMEOUT_MS must be an integer, got {raw_timeout!r}"
            ) from None
        url = os.environ.get("DATABASE_URL") or None
        return cls(
            database_url=url,
            data_dir=Path(os.environ.get("CDMS_DATA_DIR", ".cdms")).expanduser(),
            statement_timeout_ms=timeout,
        )


def to_sqlalchemy_url(url: str) -> str:
    """``postgresql://`` or ``postgres://`` → ``postgresql+psycopg://`` (psycopg 3)."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    from db.errors import ConfigError

    raise ConfigError(f"DATABASE_URL must start with postgresql:// (got {url.split(':', 1)[0]}://)")


def to_libpq_url(url: str) -> str:
    """The plain ``postgresql://`` form that psycopg.connect and pg_dump accept."""
    if url.startswith("postgresql+psycopg://"):
        return "postgresql://" + url[len("postgresql+psycopg://") :]
    return url
