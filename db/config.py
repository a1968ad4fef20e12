"""Database settings, read once from the environment.

``DATABASE_URL``   use this server (``postgresql://user@host:port/db``); unset: embedded.
``CDMS_DATA_DIR``  folder for the embedded server and local state; unset: the nearest
                   ``.cdms`` folder holding a cluster in the current folder or a parent
                   (as git finds ``.git``; one another user owns or may write to is
                   skipped, with a warning), else ``./.cdms`` (see ``resolve_data_dir``);
                   with ``DATABASE_URL`` set, none is searched for.
``CDMS_STATEMENT_TIMEOUT_MS``  per-statement timeout for API requests (default 15000).
``CDMS_DB_POOL_SIZE``  connections each engine keeps open (default 16).
``CDMS_DB_MAX_OVERFLOW``  extra connections under bursts, closed when returned (default 8).
``CDMS_DB_QUEUE_SIZE``  requests of a process that may wait for the database at once
                   (default 200; schema/gate.py); one more is refused with 503.
``CDMS_READ_URLS``  comma-separated streaming replicas for reads (db/replicas.py); unset: none.
``CDMS_DB_PREPARE``  server-side prepared statements: ``auto`` (default: psycopg prepares a
                   statement after its fifth run), ``on`` (from the first run) or ``off``
                   (never: behind PgBouncer in transaction mode before 1.21).
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, TypeVar
from urllib.parse import parse_qsl, quote, urlencode

from pydantic import Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

DATA_DIR_NAME = ".cdms"

ENV_CONFIG = SettingsConfigDict(
    frozen=True,
    env_ignore_empty=True,  # VAR= means the default, as an unset VAR
    case_sensitive=True,
    extra="ignore",
    validate_by_name=True,  # constructed by field name in code and tests; by alias from env
    validate_by_alias=True,
)

S = TypeVar("S", bound=BaseSettings)


class _VariablesOnly(EnvSettingsSource):
    """The environment, each field read from its variable (its alias) alone. With
    ``validate_by_name`` pydantic-settings would also read a variable spelt as the field's
    Python name (``port``, ``demo_open``, ``database_url``): an undocumented second name per
    setting, which ``cdms serve`` does not warn about either."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        alias = field.validation_alias
        if isinstance(alias, str):
            return self.env_vars.get(alias), alias, False
        return super().get_field_value(field, field_name)


class EnvSettings(BaseSettings):
    """Settings read from the environment by their documented variable names only (and,
    in code and tests, constructed by field name)."""

    model_config = ENV_CONFIG

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _VariablesOnly(settings_cls))


def read_env(cls: type[S], **given: Any) -> S:
    """``cls`` from the environment (``given`` overrides), or one ConfigError listing every
    variable that is wrong, by its name (a typo such as ``CDMS_TRAIN_ON_START=flase`` stops
    the start, it never means a default)."""
    try:
        return cls(**given)
    except ValidationError as exc:
        from db.errors import ConfigError

        raise ConfigError(
            "; ".join(_issue(cls, e) for e in exc.errors(include_url=False))
        ) from None


_PHRASES = {
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "int_type": "must be an integer",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "bool_parsing": "must be a boolean (1/0, true/false, yes/no, on/off)",
    "bool_type": "must be a boolean (1/0, true/false, yes/no, on/off)",
}


_BOUNDS = {
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be more than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
}


def _issue(cls: type[BaseSettings], error: Any) -> str:
    """One validation error as ``NAME must be …, got 'raw'`` (NAME: the variable)."""
    loc = error.get("loc") or ()
    field = cls.model_fields.get(str(loc[0])) if loc else None
    alias = field.validation_alias if field is not None else None
    name = alias if isinstance(alias, str) else (str(loc[0]) if loc else cls.__name__)
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in _PHRASES:
        what = _PHRASES[kind]
    elif kind in _BOUNDS:
        return f"{name} {_BOUNDS[kind].format(**ctx)}, got {error.get('input')}"
    elif kind == "literal_error":
        what = "must be " + str(ctx["expected"]).replace("'", "")
    elif kind == "string_too_short":  # (a secret: never repeated)
        return f"{name} must have at least {ctx['min_length']} characters"
    elif kind == "value_error":  # our validators' own words
        said = str(ctx.get("error", error["msg"]))
        return f"{name} {said}, got {error.get('input')!r}" if said.startswith("must") else said
    else:
        what = f"is not valid ({error['msg']})"
    return f"{name} {what}, got {error.get('input')!r}"


def has_cluster(data_dir: Path) -> bool:
    """Whether ``data_dir`` holds an embedded PostgreSQL cluster (``db.server``)."""
    return (data_dir / "pg" / "PG_VERSION").is_file()


def resolve_data_dir(
    env: str | None, cwd: Path, warn: Callable[[str], None] | None = None
) -> tuple[Path, str]:
    """The data folder, and how it was chosen: ``CDMS_DATA_DIR`` (``env``) when set; else
    the nearest ``.cdms`` holding a cluster in ``cwd`` or one of its parents ("found"), so
    a command run from a sub-folder of the project uses the project's database; else
    ``cwd/.cdms`` ("default", which may not exist yet).

    A folder cdms finds by itself must be the user's own (:func:`unsafe`): another user's
    ``/tmp/.cdms`` (git's CVE-2022-24765) is skipped with one line to ``warn`` (stderr by
    default) for ``cwd/.cdms``, which itself, if it exists, must be the user's own, else
    DataDirError (naming the fix, never the folder as one to use)."""
    if env:
        return Path(env).expanduser().absolute(), "CDMS_DATA_DIR"
    default = cwd / DATA_DIR_NAME
    for folder in (cwd, *cwd.parents):
        found = folder / DATA_DIR_NAME
        if not has_cluster(found):
            continue
        problem = unsafe(found, found / "pg")
        if problem is None:
            return found, "found"
        if found != default:  # (./.cdms itself: refused below, nothing to fall back to)
            (warn or _warn)(
                f"the data folder {found} is not used: {problem.why}, so another user could"
                f" have put it there; using {default}"
            )
        break
    if _exists(default):
        check_own(default, default / "pg" if _exists(default / "pg") else None)
    return default, "default"


def _exists(path: Path) -> bool:
    return path.is_symlink() or path.exists()


_warned: set[str] = set()


def _warn(line: str) -> None:
    """``warning: line`` on stderr, once per process (settings are read more than once)."""
    if line in _warned:
        return
    _warned.add(line)
    from db.errors import printable

    print(f"warning: {printable(line)}", file=sys.stderr)


# the user pgserver runs PostgreSQL as when started by root (and owner of its cluster)
PGSERVER_USER = "pgserver"


class Unsafe(NamedTuple):
    """Why a data folder (or its cluster folder) is not used, and what makes it usable."""

    why: str
    fix: str


def unsafe(data_dir: Path, cluster: Path | None = None) -> Unsafe | None:
    """Why ``data_dir``, or its ``cluster`` folder, may not be used, or None: another user
    owns it or may write to it, so another local user could have planted it, with a
    ``postmaster.pid`` that names their own server (which would then receive the seed data
    and API keys). As root, the cluster belongs to pgserver's own user."""
    if os.name != "posix":
        return None
    me = os.geteuid()
    for path in (data_dir, *([cluster] if cluster is not None else [])):
        owners = {me}
        if me == 0 and path == cluster:
            owners |= _uid_of(PGSERVER_USER)
        problem = _not_own(path, owners, me)
        if problem is not None:
            return problem
    return None


def check_own(data_dir: Path, cluster: Path | None = None) -> None:
    """Refuse (DataDirError) a data folder :func:`unsafe` finds fault with. ``CDMS_DATA_DIR``
    names a folder explicitly, which is not checked."""
    problem = unsafe(data_dir, cluster)
    if problem is None:
        return
    from db.errors import DataDirError

    raise DataDirError(
        f"the data folder {data_dir} is not used: {problem.why}, so another user could have"
        f" put something in it; {problem.fix}"
    )


def _uid_of(name: str) -> set[int]:
    import pwd

    try:
        return {pwd.getpwnam(name).pw_uid}
    except KeyError:
        return set()


_ELSEWHERE = "set CDMS_DATA_DIR to another folder of yours, or run cdms from another folder"


def _not_own(path: Path, owners: set[int], me: int) -> Unsafe | None:
    """Why ``path`` (the link and the folder it names) is not ``owners``' alone, or None."""
    try:
        link, target = os.lstat(path), os.stat(path)
    except OSError as exc:
        return Unsafe(f"{path} cannot be checked ({exc.strerror or exc})", _ELSEWHERE)
    for info in (link, target):
        if info.st_uid not in owners:
            return Unsafe(
                f"{path} is owned by uid {info.st_uid}, not by you (uid {me})", _ELSEWHERE
            )
    mode = stat.S_IMODE(target.st_mode)
    if not stat.S_ISDIR(target.st_mode):
        return Unsafe(f"{path} is not a folder", _ELSEWHERE)
    if mode & 0o022:
        return Unsafe(
            f"{path} is writable by other users (mode {mode:04o})",
            f"if it is yours, make it writable by you alone (chmod go-w {path}), or {_ELSEWHERE}",
        )
    return None


class DbSettings(EnvSettings):
    """The database's variables (``.env.example`` documents each)."""

    database_url: str | None = Field(None, validation_alias="DATABASE_URL")
    data_dir_env: str | None = Field(None, validation_alias="CDMS_DATA_DIR")
    statement_timeout_ms: int = Field(
        15000, ge=0, le=2**31 - 1, validation_alias="CDMS_STATEMENT_TIMEOUT_MS"
    )
    # a pool at least as large as the requests one process serves at once: a connection
    # beyond it is opened for one request and closed after it (a server process forked and
    # its caches warmed per request), which cost the API a fifth of its throughput
    pool_size: int = Field(16, ge=1, validation_alias="CDMS_DB_POOL_SIZE")
    max_overflow: int = Field(8, ge=0, validation_alias="CDMS_DB_MAX_OVERFLOW")
    # requests of a process that may wait for a database permit at once (schema/gate.py);
    # one more is refused at once with 503 SERVICE_UNAVAILABLE
    queue_size: int = Field(200, ge=0, le=1_000_000, validation_alias="CDMS_DB_QUEUE_SIZE")
    read_urls: Annotated[tuple[str, ...], NoDecode] = Field((), validation_alias="CDMS_READ_URLS")
    prepare: Literal["auto", "on", "off"] = Field("auto", validation_alias="CDMS_DB_PREPARE")

    @classmethod
    def from_env(cls) -> DbSettings:
        return read_env(cls)

    @field_validator("read_urls", mode="before")
    @classmethod
    def _urls(cls, raw: Any) -> tuple[str, ...]:
        listed = raw.split(",") if isinstance(raw, str) else list(raw)
        urls = tuple(u.strip() for u in listed if u.strip())
        for url in urls:
            if not url.startswith(_SCHEMES):
                raise ValueError(
                    f"CDMS_READ_URLS must list postgresql:// URLs, got {url.split(':', 1)[0]}://"
                )
        return tuple(to_libpq_url(u) for u in urls)

    @field_validator("prepare", mode="before")
    @classmethod
    def _lower(cls, raw: Any) -> Any:
        return raw.strip().lower() if isinstance(raw, str) else raw

    @cached_property
    def _data_dir(self) -> tuple[Path, str]:
        return resolve_data_dir(self.data_dir_env, Path.cwd())

    @property
    def data_dir(self) -> Path:
        return self._data_dir[0]

    @property
    def used_data_dir(self) -> Path | None:
        """The data folder cdms uses (``cdms serve``'s lock): the embedded server's; with
        ``DATABASE_URL``, the one ``CDMS_DATA_DIR`` names, else none. Nothing is searched
        for then: a ``.cdms`` planted above the working folder stopped ``cdms serve``
        against an external server (probe 15, M3)."""
        if self.database_url is None or self.data_dir_env:
            return self.data_dir
        return None

    @property
    def data_dir_source(self) -> str:
        """How :attr:`data_dir` was chosen: "CDMS_DATA_DIR", "found" or "default"."""
        return self._data_dir[1]

    def prepare_threshold(self) -> int | None:
        """psycopg's ``prepare_threshold`` for ``prepare``: None never prepares."""
        return {"auto": 5, "on": 0, "off": None}[self.prepare]


_SCHEMES = ("postgresql+psycopg://", "postgresql://", "postgres://")


def to_sqlalchemy_url(url: str) -> str:
    """``postgresql://`` or ``postgres://`` → ``postgresql+psycopg://`` (psycopg 3).

    Several hosts (``postgresql://u@a:5432,b:5432/db?target_session_attrs=read-write``, the
    libpq form a failover set-up uses) become SQLAlchemy's ``?host=a:5432&host=b:5432``."""
    for prefix in _SCHEMES:
        if url.startswith(prefix):
            check_url(to_libpq_url(url))
            return "postgresql+psycopg://" + _hosts_to_query(url[len(prefix) :])
    from db.errors import ConfigError

    # (only the scheme: libpq's keyword/value form, "host=h password=...", has none)
    got = f"{url.split('://', 1)[0][:20]}://" if "://" in url else "no scheme"
    raise ConfigError(f"DATABASE_URL must start with postgresql:// (got {got})")


_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def check_url(url: str) -> None:
    """A URL libpq can use: else ConfigError (what an orchestrator does not retry), with
    no password in it (libpq's messages quote the URL)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    from db.errors import ConfigError

    try:
        params = conninfo_to_dict(url)
    except UnicodeDecodeError:  # a percent escape that is not UTF-8 (?options=%ff)
        raise ConfigError(
            "DATABASE_URL is not a valid PostgreSQL URL: a percent escape is not UTF-8 text"
        ) from None
    except psycopg.Error as exc:
        raise ConfigError(
            f"DATABASE_URL is not a valid PostgreSQL URL: {_hide_password(str(exc).strip(), url)}"
        ) from None
    ports = str(params.get("port") or "").split(",")  # (empty: that host's default)
    if not all(p == "" or (p.isdigit() and 0 < int(p) < 65536) for p in ports):
        raise ConfigError("DATABASE_URL is not a valid PostgreSQL URL: a port is not 1 to 65535")
    if params.get("sslmode", "prefer") not in _SSLMODES:
        raise ConfigError(
            f"DATABASE_URL is not a valid PostgreSQL URL: sslmode is one of {', '.join(_SSLMODES)}"
        )


def _hide_password(message: str, url: str) -> str:
    """``message`` without the URL's passwords (``user:password@``, ``?password=``), as
    written and percent-decoded."""
    import re
    from urllib.parse import unquote

    secrets: list[str] = []
    for text in (url, unquote(url)):  # (libpq decodes a parameter's name too: pass%77ord)
        secrets += re.findall(r"[?&]password=([^&#]*)", text)
        # the keyword/value form: password=secret or password='se cret'
        secrets += [q or p for q, p in re.findall(r"password\s*=\s*(?:'([^']*)'|(\S+))", text)]
    userinfo = url.split("://", 1)[-1].split("@", 1)
    if len(userinfo) == 2 and ":" in userinfo[0]:
        secrets.append(userinfo[0].split(":", 1)[1])
    shown = {variant for secret in secrets for variant in (secret, unquote(secret))}
    for secret in sorted(shown - {""}, key=len, reverse=True):
        message = message.replace(secret, "***")
    return message


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
