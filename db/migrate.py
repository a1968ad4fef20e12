"""Run the Alembic migrations (each revision applies one ``db/sql/*.sql`` file).

Upgrades (and the few downgrades) take a session-level advisory lock so that two
processes starting at once (a ``cdms serve`` and a test run) never apply the same revision
twice. Every revision runs in its own transaction: a failing file leaves the database at
the previous revision. (0038 is two: it commits its CHECKs NOT VALID before its scans, so
that no reader waits for them; its first step may run again.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from db.engine import make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_LOCK_KEY = 0x636D6473  # 'cdms'


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def known_revisions() -> frozenset[str]:
    """Every revision this code knows (a database at another one is newer: a rolling
    upgrade migrated it for the next version, expand-then-contract keeps it compatible)."""
    return frozenset(s.revision for s in ScriptDirectory.from_config(_config()).walk_revisions())


def current_revision(url: str) -> str | None:
    with make_engine(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(url: str, target: str = "head") -> tuple[str | None, str]:
    """Upgrade ``url`` to ``target``; return (revision before, revision after)."""
    return _migrate(url, target, command.upgrade)


def downgrade(url: str, target: str) -> tuple[str | None, str]:
    """Take ``url`` back to ``target`` (only revisions that say how; most are
    forward-only: restore a backup); return (revision before, revision after)."""
    return _migrate(url, target, command.downgrade)


def _migrate(url: str, target: str, run: Callable[[Config, str], None]) -> tuple[str | None, str]:
    engine = make_engine(url)
    cfg = _config()
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK_KEY})
        conn.commit()
        try:
            before = MigrationContext.configure(conn).get_current_revision()
            conn.commit()  # no open transaction: alembic then commits each revision alone
            cfg.attributes["connection"] = conn
            run(cfg, target)
            conn.commit()
            after = MigrationContext.configure(conn).get_current_revision()
        finally:
            # an interrupt (Ctrl-C) or a lost server invalidates the session, which took the
            # lock with it: a statement here would open another and replace the error
            lost = conn.invalidated
            conn.rollback()
            if not lost:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
                conn.commit()
    assert after is not None
    return before, after
