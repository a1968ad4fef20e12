"""Where a read runs: a streaming replica (``CDMS_READ_URLS``) or the primary.

Reads (the fast lane, the request's read transaction, the cube) go to a replica, in turn;
writes, LISTEN, the ETL and the model registry stay on the primary (``DATABASE_URL``).

Read-your-writes: a mutation's answer carries the primary's WAL position after its commit
(:func:`commit_lsn`); a request that sends it back is served by a replica only once that
replica has replayed at least that far (``pg_last_wal_replay_lsn() >= lsn``), else by the
primary. A replica's replayed position only grows, so the router remembers the last one it
read and asks again only when a request needs more. A replica that cannot be reached is
left out for :data:`DOWN_S` seconds (its reads go to the primary meanwhile).
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.errors import BadUserInputError

DOWN_S = 5.0  # a replica that failed is left out this long
_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")
HEADER = "Cdms-Commit-Lsn"


def parse_lsn(text: object, source: str = HEADER) -> int:
    """A WAL position as PostgreSQL writes it (``16/B374D848``) → an integer; anything
    else is a BAD_USER_INPUT naming ``source`` (the header, or ``extensions.commitLsn`` of
    an operation sent over a WebSocket)."""
    m = _LSN.match(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise BadUserInputError(
            f"{source} must be a WAL position such as 0/16B3748 (as a mutation's"
            f" extensions.commitLsn gives it), got {str(text)[:40]!r}",
            field=source,
        )
    return (int(m.group(1), 16) << 32) | int(m.group(2), 16)


def commit_lsn(engine: Engine) -> str:
    """The primary's WAL write position now: after a commit returned, at or past its
    commit record (what a replica must have replayed to show it). Its transaction ends
    with COMMIT: psycopg deallocates a connection's prepared statements on every ROLLBACK,
    and this runs after every mutation on a connection the reads share (a new order's
    prediction then planned its feature statement on every request)."""
    with engine.begin() as conn:
        got = conn.exec_driver_sql("SELECT pg_current_wal_lsn()::text").scalar_one()
    return str(got)


@dataclass
class _Replica:
    engine: Engine
    replayed: int = -1  # the last replayed position read there
    down_until: float = 0.0


@dataclass
class Router:
    """The process's choice of engine per read (thread-safe)."""

    primary: Engine
    replicas: list[_Replica] = field(default_factory=list)
    _turn: itertools.count[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def of(cls, primary: Engine, replicas: list[Engine]) -> Router:
        return cls(primary, [_Replica(e) for e in replicas])

    def read_engine(self, min_lsn: int | None = None) -> Engine:
        """A replica for a read (one that has replayed ``min_lsn`` when given), else the
        primary. Blocking when it must ask a replica how far it is: call from a thread."""
        if not self.replicas:
            return self.primary
        now = time.monotonic()
        start = next(self._turn)
        for i in range(len(self.replicas)):
            replica = self.replicas[(start + i) % len(self.replicas)]
            if replica.down_until > now:
                continue
            if min_lsn is None or replica.replayed >= min_lsn:
                return replica.engine
            if self._replayed(replica) >= min_lsn:
                return replica.engine
        return self.primary

    def _replayed(self, replica: _Replica) -> int:
        try:
            with replica.engine.connect() as conn:
                got = conn.exec_driver_sql("SELECT pg_last_wal_replay_lsn()::text").scalar()
        except sa.exc.SQLAlchemyError:
            self.failed(replica.engine)
            return -1
        if got is None:  # not a standby (promoted, or misconfigured): never "caught up"
            return -1
        value = parse_lsn(str(got))
        with self._lock:
            replica.replayed = max(replica.replayed, value)
        return value

    def failed(self, engine: Engine) -> None:
        """``engine`` (a replica) could not serve: leave it out for a while."""
        for replica in self.replicas:
            if replica.engine is engine:
                replica.down_until = time.monotonic() + DOWN_S
                replica.replayed = -1


_routers: dict[tuple[int, tuple[str, ...]], Router] = {}
_routers_lock = threading.Lock()


def router_for(primary: Engine, read_urls: tuple[str, ...] | None = None) -> Router:
    """The process's router for ``primary``, with the replicas ``CDMS_READ_URLS`` names
    (or ``read_urls``)."""
    from db.config import DbSettings
    from db.engine import make_engine

    urls = DbSettings.from_env().read_urls if read_urls is None else read_urls
    with _routers_lock:
        router = _routers.get((id(primary), urls))
        if router is None or router.primary is not primary:
            router = Router.of(primary, [make_engine(u) for u in urls])
            _routers[(id(primary), urls)] = router
    return router
