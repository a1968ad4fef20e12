"""Load generated tables into ``app.*`` in one transaction, then prove the invariants.

User triggers are off during the load (``session_replication_role = replica`` as a
superuser, else ``ALTER TABLE ... DISABLE TRIGGER USER`` inside the transaction), so the
maintained columns are computed by the generator and ``checks.sql`` verifies them (and,
because replica mode also skips foreign-key triggers, every reference) before commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources

import psycopg
from psycopg import sql

from db.config import to_libpq_url
from db.errors import ConflictError, from_db_error
from db.seed.copy import ProgressFn, Table, write_table
from db.seed.errors import SeedCheckError

# every table the seed writes, parents first
SEEDED_TABLES = (
    "customers",
    "products",
    "orders",
    "order_items",
    "order_status_history",
    "returns",
    "feedback",
    "support_tickets",
)
_IDENTITY_TABLES = tuple(t for t in SEEDED_TABLES if t != "order_items")
# emptied with them by a reset: what the daily limits count of the seeded rows (0033), whose
# customer ids start again at 1 (a new customer 5 must not inherit the old one's edits)
_RESET_TABLES = (*SEEDED_TABLES, "feedback_edits")


def checks() -> list[tuple[str, str]]:
    """(name, query returning violations) for every block of checks.sql."""
    text = resources.files("db.seed").joinpath("checks.sql").read_text(encoding="utf-8")
    blocks: list[tuple[str, str]] = []
    for chunk in text.split("-- check: ")[1:]:
        name, _, body = chunk.partition("\n")
        blocks.append((name.strip(), body.strip().rstrip(";")))
    return blocks


def _idents(tables: Sequence[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier("app", t) for t in tables)


def non_empty_tables(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    found = []
    for t in SEEDED_TABLES:
        q = sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier("app", t))
        row = conn.execute(q).fetchone()
        if row and row[0]:
            found.append(t)
    return found


def ensure_empty(url: str) -> None:
    """Raise ConflictError if the app schema already holds data (checked before generating)."""
    with psycopg.connect(to_libpq_url(url)) as conn:
        _refuse_non_empty(conn)


def _refuse_non_empty(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    found = non_empty_tables(conn)
    if found:
        raise ConflictError(
            f"the database already holds data (app.{', app.'.join(found)}); "
            "seed an empty database, or pass --reset to delete all app data first",
            entity="database",
            reason="not_empty",
            tables=found,
        )


def run_checks(
    conn: psycopg.Connection[tuple[object, ...]], progress: ProgressFn | None = None
) -> None:
    blocks = checks()
    failed: dict[str, int] = {}
    for k, (name, query) in enumerate(blocks):
        row = conn.execute(f"SELECT count(*) FROM ({query}) AS violations").fetchone()
        if row and int(row[0]):  # type: ignore[call-overload]
            failed[name] = int(row[0])  # type: ignore[call-overload]
        if progress:
            progress("check", k + 1, len(blocks))
    if failed:
        listed = "; ".join(f"{name}: {n} rows" for name, n in failed.items())
        raise SeedCheckError(f"seeded data violates invariants ({listed})", violations=failed)


def load_tables(
    url: str, tables: Sequence[Table], *, reset: bool = False, progress: ProgressFn | None = None
) -> dict[str, int]:
    """Write ``tables`` into an empty app schema (emptied first with ``reset``); all or nothing."""
    counts: dict[str, int] = {}
    try:
        with psycopg.connect(to_libpq_url(url)) as conn:
            conn.execute("SELECT set_config('cdms.actor', 'seed', true)")
            # the tables stay locked until commit: a concurrent seed waits, then sees data
            conn.execute(
                sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(_idents(SEEDED_TABLES))
            )
            if reset:
                conn.execute(
                    sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(_idents(_RESET_TABLES))
                )
            else:
                _refuse_non_empty(conn)
            superuser = _is_superuser(conn)
            if superuser:
                conn.execute("SET LOCAL session_replication_role = replica")
            else:
                _set_user_triggers(conn, enabled=False)
            conn.execute("SET LOCAL maintenance_work_mem = '256MB'")  # index builds
            conn.execute("SET LOCAL work_mem = '128MB'")  # the checks' sorts and hashes
            indexes = _drop_secondary_indexes(conn)
            for table in tables:
                counts[table.name.split(".")[-1]] = write_table(conn, table, progress)
            for k, definition in enumerate(indexes):
                conn.execute(definition)  # from pg_get_indexdef
                if progress:
                    progress("indexes", k + 1, len(indexes))
            if superuser:
                conn.execute("SET LOCAL session_replication_role = origin")
            else:
                _set_user_triggers(conn, enabled=True)
            for t in _IDENTITY_TABLES:
                conn.execute(
                    sql.SQL(
                        "SELECT setval(pg_get_serial_sequence({name}, 'id'),"
                        " coalesce(max(id), 0) + 1, false) FROM {table}"
                    ).format(name=sql.Literal(f"app.{t}"), table=sql.Identifier("app", t))
                )
            conn.execute(sql.SQL("ANALYZE {}").format(_idents(SEEDED_TABLES)))
            if progress:
                progress("analyze", 1, 1)
            run_checks(conn, progress)  # after ANALYZE: the checks need a good plan
    except psycopg.Error as exc:
        mapped = from_db_error(exc)
        if mapped is not None:
            raise mapped from exc
        raise
    return counts


def _is_superuser(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    row = conn.execute("SELECT current_setting('is_superuser')").fetchone()
    return bool(row and row[0] == "on")


def _set_user_triggers(conn: psycopg.Connection[tuple[object, ...]], *, enabled: bool) -> None:
    verb = sql.SQL("ENABLE" if enabled else "DISABLE")
    for t in SEEDED_TABLES:
        conn.execute(
            sql.SQL("ALTER TABLE {} {} TRIGGER USER").format(sql.Identifier("app", t), verb)
        )


def _drop_secondary_indexes(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    """Drop the seeded tables' indexes that back no constraint; return their definitions.

    Building an index once after the load is several times faster than maintaining it row by
    row. The definitions come from the catalogue, so whatever a migration declares is put
    back exactly; DDL is transactional, so a failed seed restores them too.
    """
    found = conn.execute(
        """
        SELECT ns.nspname, ic.relname, pg_get_indexdef(i.indexrelid)
        FROM pg_index i
        JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_class tc ON tc.oid = i.indrelid
        JOIN pg_namespace ns ON ns.oid = tc.relnamespace
        WHERE ns.nspname = 'app' AND tc.relname = ANY(%s)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
        ORDER BY ic.relname
        """,
        (list(SEEDED_TABLES),),
    ).fetchall()
    definitions = []
    for schema, name, definition in found:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(str(schema), str(name))))
        definitions.append(str(definition))
    return definitions
