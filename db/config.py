"""Database settings, read once from the environment.

``DATABASE_URL``   use this server (``postgresql://user@host:port/db``); unset: embedded.
``CDMS_DATA_DIR``  folder for the embedded server and local state; unset: the nearest
                   ``.cdms`` folder holding a cluster in the current folder or a parent
                   (as git finds ``.git``), else ``./.cdms`` (see ``resolve_data_dir``).
``CDMS_STATEMENT_TIMEOUT_MS``  per-statement timeout for API requests (default 15000).
``CDMS_DB_POOL_SIZE``  connections each engine keeps open (default 16).
``CDMS_DB_MAX_OVERFLOW``  extra connections under bursts, closed when returned (default 8).
``CDMS_READ_URLS``  comma-separated streaming replicas for reads (db/replicas.py); unset: none.
``CDMS_DB_PREPARE``  server-side prepared statements: ``auto`` (default: psycopg prepares a
                   statement after its fifth run), ``on`` (from the first run) or ``off``
                   (never: behind PgBouncer in transaction mode before 1.21).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode

DATA_DIR_NAME = ".cdms"


def has_cluster(data_dir: Path) -> bool:
    """Whether ``data_dir`` holds an embedded PostgreSQL cluster (``db.server``)."""
    return (data_dir / "pg" / "PG_VERSION").is_file()


def resolve_data_dir(env: str | None, cwd: Path) -> tuple[Path, str]:
    """The data folder, and how it was chosen: ``CDMS_DATA_DIR`` (``env``) when set; else
    the nearest ``.cdms`` holding a cluster in ``cwd`` or one of its parents ("found"), so
    a command run from a sub-folder of the project uses the project's database; else
    ``cwd/.cdms`` ("default", which may not exist yet)."""
    if env:
        return Path(env).expanduser().absolute(), "CDMS_DATA_DIR"
    for folder in (cwd, *cwd.parents):
        if has_cluster(folder / DATA_DIR_NAME):
            return folder / DATA_DIR_NAME, "found"
    return cwd / DATA_DIR_NAME, "default"


@dataclass(frozen=True)
class DbSettings:
    database_url: str | None
    data_dir: Path
    statement_timeout_ms: int
    # a pool at least as large as the requests one process serves at once: a connection
    # beyond it is opened for one request and closed after it (a server process forked and
    # its caches warmed per request), which cost the API a fifth of its throughput
    pool_size: int = 16
    max_overflow: int = 8
    data_dir_source: str = "CDMS_DATA_DIR"  # or "found" / "default": resolve_data_dir
    read_urls: tuple[str, ...] = ()
    prepare: str = "auto"  # auto | on | off

    @classmethod
    def from_env(cls) -> DbSettings:
        url = os.environ.get("DATABASE_URL") or None
        data_dir, source = resolve_data_dir(os.environ.get("CDMS_DATA_DIR"), Path.cwd())
        return cls(
            database_url=url,
            data_dir=data_dir,
            data_dir_source=source,
            statement_timeout_ms=_int("CDMS_STATEMENT_TIMEOUT_MS", 15000, minimum=None),
            pool_size=_int("CDMS_DB_POOL_SIZE", 16, minimum=1),
            max_overflow=_int("CDMS_DB_MAX_OVERFLOW", 8, minimum=0),
            read_urls=_read_urls(os.environ.get("CDMS_READ_URLS", "")),
            prepare=_prepare(os.environ.get("CDMS_DB_PREPARE", "")),
        )

    def prepare_threshold(self) -> int | None:
        """psycopg's ``prepare_threshold`` for ``prepare``: None never prepares."""
        return {"auto": 5, "on": 0, "off": None}[self.prepare]


def _read_urls(raw: str) -> tuple[str, ...]:
    urls = tuple(u.strip() for u in raw.split(",") if u.strip())
    for url in urls:
        to_sqlalchemy_url(url)  # validates the scheme
    return tuple(to_libpq_url(u) for u in urls)


def _prepare(raw: str) -> str:
    from db.errors import ConfigError

    value = raw.strip().lower() or "auto"
    if value not in {"auto", "on", "off"}:
        raise ConfigError(f"CDMS_DB_PREPARE must be auto, on or off, got {raw!r}")
    return value


def _int(name: str, default: int, *, minimum: int | None) -> int:
    from db.errors import ConfigError

    raw = os.environ.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def to_sqlalchemy_url(url: str) -> str:
    """``postgresql://`` or ``postgres://`` → ``postgresql+psycopg://`` (psycopg 3).

    Several hosts (``postgresql://u@a:5432,b:5432/db?target_session_attrs=read-write``, the
    libpq form a failover set-up uses) become SQLAlchemy's ``?host=a:5432&host=b:5432``."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + _hosts_to_query(url[len(prefix) :])
    from db.errors import ConfigError

    raise ConfigError(f"DATABASE_URL must start with postgresql:// (got {url.split(':', 1)[0]}://)")


def to_libpq_url(url: str) -> str:
    """The plain ``postgresql://`` form that psycopg.connect and pg_dump accept (several
    ``host=`` parameters back into libpq's ``a:5432,b:5432``)."""
    if url.startswith("postgresql+psycopg://"):
        return "postgresql://" + _query_to_hosts(url[len("postgresql+psycopg://") :])
    return url


def _split(rest: str) -> tuple[str, str, str, str]:
    """``user@hosts/db?query`` → (user part with its ``@``, hosts, ``/db``, ``?query``)."""
    rest, q, query = rest.partition("?")
    at = rest.rfind("@", 0, rest.find("/") if "/" in rest else len(rest))
    user, rest = rest[: at + 1], rest[at + 1 :]
    hosts, slash, path = rest.partition("/")
    return user, hosts, slash + path, q + query


def _hosts_to_query(rest: str) -> str:
    user, hosts, path, query = _split(rest)
    if "," not in hosts:
        return rest
    listed = [h for h in hosts.split(",") if h]
    if any(":" in h for h in listed):  # a:5432,b:5432
        params = "&".join(f"host={quote(h, safe='')}" for h in listed)
    else:  # a,b (with ?port=p1,p2 or the default port)
        params = "host=" + quote(",".join(listed), safe="")
    tail = query[1:]
    return f"{user}{path or '/'}?{params}" + (f"&{tail}" if tail else "")


def _query_to_hosts(rest: str) -> str:
    user, hosts, path, query = _split(rest)
    pairs = parse_qsl(query[1:], keep_blank_values=True)
    listed = [v for k, v in pairs if k == "host"]
    if hosts or len(listed) < 2:
        return rest
    others = urlencode([(k, v) for k, v in pairs if k != "host"])
    return f"{user}{','.join(listed)}{path}" + (f"?{others}" if others else "")
