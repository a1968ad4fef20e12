"""The cube model as plain SQL views for BI tools (schema ``bi``), and their login role.

One view per cube, one row per row of its table (a fact row, or a dimension version): the
cube's dimensions as columns, the dimensions of the cubes it joins (many-to-one, as the
planner joins them) as ``<cube>_<dimension>`` columns, each segment as a boolean
``segment_<segment>``, and each ``count``/``sum`` measure as a column whose plain ``sum()``
over any group is the cube's answer for that group. The other measures (distinct counts,
averages, percentiles, ratios, semi-additive ``last``) cannot be a column of one row; each
is documented as a formula over the view's columns in ``COMMENT ON VIEW`` (and
``docs/bi.md``), with the column it needs. Only what an analyst may see is published
(perspectives: ``products.unitCost`` stays out).

The views run with their owner's rights, so the login role reads ``bi`` and nothing else:
no USAGE on ``app``, ``dw``, ``ml`` or ``dw_rollup``, read-only transactions. ``publish``
is idempotent; the schema's comment records a fingerprint of the generated SQL, so the ETL
republishes (``republish_if_changed``) only when the model changed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import assert_never

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db import locks
from db.errors import ConfigError
from semantic.model import Cube, Measure, MeasureType, Model, Relationship
from semantic.sources import expand_refs, ident, model_sql, snake

SCHEMA = "bi"
ROLE_MARK = "cdms BI analyst (cdms bi publish)"  # COMMENT ON ROLE: a role we may manage
_FINGERPRINT = re.compile(r"model ([0-9a-f]{64})")
_LOCK = (0x636D6473, 0x4249)  # ('cdms', 'BI'): one publisher at a time
_PERSPECTIVE = "analyst"
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# cdms's own roles (db/sql/0006_security.sql): the owner group, the API's two
_CDMS_ROLES = ("cdms_owner", "cdms_api", "cdms_customer")
# roles a BI login must never be (the API's and the database's own)
_RESERVED = {*_CDMS_ROLES, "postgres"}
# `cdms bi publish` waits this long for BI sessions reading the views (never in the lock
# queue for long: db/locks.py); the pipeline tries once and republishes at a later run
PUBLISH_WAIT_S = 15.0
PUBLISH_QUEUE_S = 5.0  # then in the queue once, briefly: BI queries that keep the views busy
# the role's session defaults (docs/bi.md: a session may change the first three itself;
# temp_file_limit only a superuser may set, and the role cannot reset it)
STATEMENT_TIMEOUT = "2min"
IDLE_IN_TRANSACTION_TIMEOUT = "1min"  # an abandoned transaction holds the views' locks
TEMP_FILE_LIMIT = "2GB"  # a query's sorts and hashes spilled to disk, per session


@dataclass(frozen=True)
class Column:
    name: str
    sql: str
    comment: str


@dataclass(frozen=True)
class Formula:
    measure: str
    sql: str  # over the view's columns; "bi.<cube>.<column>" for another cube's


@dataclass(frozen=True)
class View:
    cube: str
    from_sql: str
    columns: tuple[Column, ...]
    formulas: tuple[Formula, ...]
    comment: str

    def ddl(self) -> list[str]:
        cols = ",\n    ".join(f"{c.sql} AS {c.name}" for c in self.columns)
        stmts = [
            f"CREATE VIEW {SCHEMA}.{ident(self.cube)} AS\nSELECT\n    {cols}\nFROM {self.from_sql}",
            f"COMMENT ON VIEW {SCHEMA}.{ident(self.cube)} IS {_literal(self.comment)}",
        ]
        stmts += [
            f"COMMENT ON COLUMN {SCHEMA}.{ident(self.cube)}.{c.name} IS {_literal(c.comment)}"
            for c in self.columns
            if c.comment
        ]
        return stmts


def _literal(text: str) -> str:
    """A SQL string literal of trusted model text (standard_conforming_strings is on)."""
    return "'" + text.replace("'", "''") + "'"


def _table(cube: Cube) -> str:
    return cube.sql_table if cube.sql_table else f"({cube.sql})"


def _title(title: str, description: str) -> str:
    return f"{title}: {description}" if title and description else title or description


def _column_name(name: str, cube: str) -> str:
    col = snake(name)
    return f"{cube}_{col}" if col == "count" else col  # "count" reads badly as a column


def view(model: Model, cube: Cube) -> View:
    """The view of ``cube``: its columns, its measures' formulas, its comment."""
    own = cube.name
    joined: list[Cube] = []
    from_sql = f"{_table(cube)} AS {ident(own)}"
    pending = [cube]
    while pending:  # many-to-one joins, transitively, as the planner follows them
        src = pending.pop(0)
        for j in src.joins:
            target = model.cube(j.cube)
            if target is None or j.relationship is Relationship.ONE_TO_MANY:
                continue
            if target.name == own or target in joined:
                continue
            aliases = {c.name: c.name for c in model.cubes}
            on = model_sql(j.sql, aliases, src.name)
            from_sql += f"\nLEFT JOIN {_table(target)} AS {ident(target.name)} ON {on}"
            joined.append(target)
            pending.append(target)
    aliases = {c.name: c.name for c in (cube, *joined)}
    columns: list[Column] = []
    by_sql: dict[str, str] = {}  # expression -> column already carrying it

    def add(name: str, expr: str, comment: str) -> str:
        columns.append(Column(name, expr, comment))
        by_sql.setdefault(expr, name)
        return name

    for c in (cube, *joined):
        for d in c.dimensions:
            if not d.visible_to(_PERSPECTIVE) or any(o not in aliases for o, _ in d.refs()):
                continue  # hidden, or reading a cube this view does not join
            name = snake(d.name) if c is cube else f"{c.name}_{snake(d.name)}"
            sql = model_sql(expand_refs(model, d.sql), aliases, c.name)
            add(name, sql, _title(d.title, d.description))
    for s in cube.segments:
        expr = f"COALESCE(({model_sql(s.sql, aliases, own)}), false)"
        add(f"segment_{snake(s.name)}", expr, f"Segment {own}_{s.name}: {s.title}".rstrip(": "))

    measures = [m for m in cube.measures if m.visible_to(_PERSPECTIVE)]
    formulas: dict[str, str] = {}
    for m in measures:  # count and sum: a column summed
        if m.type is MeasureType.COUNT:
            expr = (
                "1" if m.sql is None else f"(({model_sql(m.sql, aliases, own)}) IS NOT NULL)::int"
            )
        elif m.type is MeasureType.SUM:
            expr = f"({model_sql(m.sql or '0', aliases, own)})"
        else:
            continue
        col = add(
            _column_name(m.name, own),
            expr,
            f"{_title(m.title, m.description)} (sum() of it is the cube's {own}.{m.name})",
        )
        formulas[m.name] = f"sum({col})"

    def input_column(m: Measure) -> str:
        expr = model_sql(m.sql or "NULL", aliases, own)
        if expr in by_sql:
            return by_sql[expr]
        plain = re.fullmatch(rf"{own}\.(\w+)", expr)
        taken = {c.name for c in columns}
        name = plain[1] if plain and plain[1] not in taken else f"{snake(m.name)}_input"
        return add(name, expr, f"Input of {own}.{m.name} ({m.title})")

    for m in measures:  # one row's value of the others, and their formula
        match m.type:
            case MeasureType.COUNT | MeasureType.SUM | MeasureType.NUMBER:
                pass
            case MeasureType.COUNT_DISTINCT:
                formulas[m.name] = f"count(DISTINCT {input_column(m)})"
            case MeasureType.AVG | MeasureType.MIN | MeasureType.MAX:
                formulas[m.name] = f"{m.type.value}({input_column(m)})"
            case MeasureType.PERCENTILE:
                formulas[m.name] = (
                    f"percentile_cont({m.percentile}) WITHIN GROUP (ORDER BY {input_column(m)})"
                )
            case MeasureType.LAST:
                t = cube.dimension(m.time_dimension or "")
                tcol = snake(t.name) if t else "?"
                formulas[m.name] = (
                    f"sum({input_column(m)}) over the rows of the group's latest {tcol} "
                    f"(semi-additive: sum by {tcol} first, then take the latest)"
                )
            case _:
                assert_never(m.type)

    def number(m: Measure, depth: int = 0) -> str:
        def ref(match: re.Match[str]) -> str:
            name = match[1]
            other, _, member = name.rpartition(".")
            if other and other != own:
                target = model.cube(other)
                tm = target.measure(member) if target else None
                inner = view_formula(model, target, tm) if target and tm else name
                return f"({_qualify(inner, other)})"
            target_m = cube.measure(member)
            if target_m is None:
                return name
            if target_m.type is MeasureType.NUMBER:
                return f"({number(target_m, depth + 1)})" if depth < 8 else name
            return formulas.get(member, member)

        return re.sub(r"\{([\w.]+)\}", ref, m.sql or "NULL")

    for m in measures:
        if m.type is MeasureType.NUMBER:
            formulas[m.name] = number(m)
    ordered = tuple(Formula(m.name, formulas[m.name]) for m in measures)
    multi = any("bi." in f.sql for f in ordered)
    lines = [
        f"{_title(cube.title, cube.description)}",
        f"One row per row of {_table(cube)}. The cube's measures over any GROUP BY:",
        *(f"  {own}.{f.measure} = {f.sql}" for f in ordered),
    ]
    if multi:
        lines.append(
            "A formula naming bi.<other cube> spans two facts: aggregate each view on the "
            "shared dimensions on its own, then combine the two results."
        )
    return View(own, from_sql, tuple(columns), ordered, "\n".join(lines))


def view_formula(model: Model, cube: Cube, m: Measure) -> str:
    """The formula of ``cube.m`` over its own view's columns."""
    for f in view(model, cube).formulas:
        if f.measure == m.name:
            return f.sql
    return m.name


def _qualify(formula: str, cube: str) -> str:
    """``sum(quantity)`` → ``sum(bi.sales.quantity)``: a formula over another view."""
    return re.sub(
        r"\b(sum|count|avg|min|max)\((DISTINCT )?(\w+)\)",
        lambda m: f"{m[1]}({m[2] or ''}{SCHEMA}.{cube}.{m[3]})",
        formula,
    )


def views(model: Model) -> list[View]:
    return [view(model, c) for c in model.cubes]


def fingerprint(model: Model) -> str:
    """A hash of the SQL ``publish`` would run for the views (changes with the model)."""
    text = "\n;\n".join(s for v in views(model) for s in v.ddl())
    return hashlib.sha256(text.encode()).hexdigest()


def published_fingerprint(conn: Connection) -> str | None:
    """The fingerprint of the published views, or None when ``bi`` was never published."""
    comment = conn.execute(
        sa.text("SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = :s"),
        {"s": SCHEMA},
    ).scalar()
    if comment is None:
        return None
    found = _FINGERPRINT.search(str(comment))
    return found[1] if found else ""


@dataclass(frozen=True)
class Published:
    views: list[str]
    readers: list[str]  # roles with SELECT on the views
    fingerprint: str
    warnings: tuple[str, ...] = ()  # what the publisher lacked the rights to do


def _lock(conn: Connection) -> None:
    """One publisher at a time (until the transaction ends; taking it again is a no-op)."""
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:a, :b)"), {"a": _LOCK[0], "b": _LOCK[1]})


def publish_views(
    conn: Connection, model: Model, *, wait_s: float = 0.0, queue_s: float = 0.0
) -> Published:
    """(Re)create every view of ``bi`` in the caller's transaction; the roles that could
    read the previous views may read the new ones. Dropping the old views waits for the
    sessions reading them at most ``wait_s``, never long in the lock queue (where every
    other reader of the views would wait behind it), then once in the queue for at most
    ``queue_s``: LockBusyError (CONFLICT) after it, the caller's transaction still usable
    and the old views in place."""
    _lock(conn)
    conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
    readers = [
        str(r)
        for (r,) in conn.execute(
            sa.text(
                "SELECT DISTINCT a.grantee::regrole::text FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace,"
                " aclexplode(c.relacl) a"
                " WHERE n.nspname = :s AND a.privilege_type = 'SELECT'"
                " AND a.grantee <> c.relowner AND a.grantee <> 0 ORDER BY 1"
            ),
            {"s": SCHEMA},
        )
    ]
    old = [
        str(v)
        for (v,) in conn.execute(
            sa.text("SELECT viewname FROM pg_views WHERE schemaname = :s"), {"s": SCHEMA}
        )
    ]
    quoted = [f'{SCHEMA}."{name}"' for name in old]

    def drop() -> None:
        for name in quoted:
            conn.execute(sa.text(f"DROP VIEW IF EXISTS {name} CASCADE"))

    locks.attempt(
        conn,
        drop,
        wait_s=wait_s,
        queue_s=queue_s,
        relations=quoted,
        what=f"the {SCHEMA} views were not replaced",
    )
    made = views(model)
    for v in made:
        for stmt in v.ddl():
            conn.execute(sa.text(stmt.replace(":", r"\:")))
    digest = fingerprint(model)
    note = f"Cube views for BI tools, published by cdms bi publish; model {digest}"
    conn.execute(sa.text(f"COMMENT ON SCHEMA {SCHEMA} IS {_literal(note)}"))
    for role in readers:
        _grant_read(conn, role)
    return Published([v.cube for v in made], readers, digest)


def republish_if_changed(conn: Connection, model: Model) -> Published | None:
    """After a model change, the views again (the ETL's publish step); None: nothing to do
    (never published, or published from this model). One attempt at the views' locks:
    LockBusyError while a BI session reads them (the old views stay; the next call tries
    again)."""
    current = published_fingerprint(conn)
    if current is None or current == fingerprint(model):
        return None
    return publish_views(conn, model)


def check_role_name(role: str) -> None:
    if not _ROLE_NAME.fullmatch(role) or role in _RESERVED or role.startswith("pg_"):
        raise ConfigError(
            f"CDMS_BI_ROLE must be a lower-case SQL name (not an API or system role), got {role!r}"
        )


def ensure_role(conn: Connection, role: str, password: str | None) -> bool:
    """Create (or update) the BI login role; True when created. A role of that name made by
    anything else than this function is refused, never taken over."""
    check_role_name(role)
    row = conn.execute(
        sa.text(
            "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls OR rolreplication,"
            " shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = :r"
        ),
        {"r": role},
    ).first()
    if row is not None and (row[0] or row[1] != ROLE_MARK or role == _current_user(conn)):
        raise ConfigError(
            f"role {role!r} exists and is not a cdms BI role: choose another CDMS_BI_ROLE"
        )
    created = row is None
    verb = "CREATE" if created else "ALTER"
    pw = "PASSWORD NULL" if password is None else f"PASSWORD {_verifier(conn, role, password)}"
    conn.execute(
        sa.text(
            f"{verb} ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
            f"NOBYPASSRLS NOINHERIT CONNECTION LIMIT 20 {pw}".replace(":", r"\:")
        )
    )
    conn.execute(sa.text(f"COMMENT ON ROLE {role} IS {_literal(ROLE_MARK)}"))
    conn.execute(sa.text(f"ALTER ROLE {role} SET default_transaction_read_only = on"))
    conn.execute(sa.text(f"ALTER ROLE {role} SET statement_timeout = '{STATEMENT_TIMEOUT}'"))
    conn.execute(
        sa.text(
            f"ALTER ROLE {role} SET idle_in_transaction_session_timeout"
            f" = '{IDLE_IN_TRANSACTION_TIMEOUT}'"
        )
    )
    conn.execute(sa.text(f"ALTER ROLE {role} SET search_path = {SCHEMA}"))
    return created


def _limit_disk(conn: Connection, role: str) -> list[str]:
    """temp_file_limit for the role: only a superuser (or a role granted SET on it) may
    set it, and the role can neither reset nor raise it. The warning when we may not."""
    try:
        with conn.begin_nested():
            conn.execute(sa.text(f"ALTER ROLE {role} SET temp_file_limit = '{TEMP_FILE_LIMIT}'"))
    except sa.exc.ProgrammingError:  # insufficient_privilege
        return [
            f"temp_file_limit not set for {role} (only a superuser may): a query of it may"
            f" spill without bound to disk; as a superuser: ALTER ROLE {role} SET"
            f" temp_file_limit = '{TEMP_FILE_LIMIT}'"
        ]
    return []


# the logins that had TEMPORARY from PUBLIC and lost it: named in a warning
_LOST_TEMP = sa.text(
    "SELECT rolname FROM pg_roles WHERE rolcanlogin AND NOT rolsuper AND rolname <> :r"
    " AND has_database_privilege(oid, :d, 'CONNECT')"
    " AND NOT has_database_privilege(oid, :d, 'TEMPORARY') ORDER BY rolname LIMIT 11"
)


def _no_temp(conn: Connection, db: str, role: str) -> list[str]:
    """No TEMPORARY on the database for the role. TEMP is PUBLIC's by default (a temp table
    fills the disk, past temp_file_limit's reach): taken from PUBLIC and given to cdms's
    roles and the login that publishes. A login that lost it is named in a warning (one
    that runs cdms without being in cdms_owner needs it back). The warning when we are not
    the database's owner."""
    conn.execute(sa.text(f'REVOKE TEMPORARY ON DATABASE "{db}" FROM PUBLIC'))
    # cdms's roles use temp tables: the ETL's loads and checks, the stored predictions'
    # scoring (cdms_owner, which the logins that migrate and run cdms join), the API's
    # prediction log (as cdms_api / cdms_customer)
    grantees = ", ".join(["CURRENT_USER", *_CDMS_ROLES])
    conn.execute(sa.text(f'GRANT TEMPORARY ON DATABASE "{db}" TO {grantees}'))
    conn.execute(sa.text(f'REVOKE TEMPORARY ON DATABASE "{db}" FROM {role}'))
    can = conn.execute(
        sa.text("SELECT has_database_privilege(:r, :d, 'TEMPORARY')"), {"r": role, "d": db}
    ).scalar()
    if can:
        return [
            f"{role} may still create temporary tables (TEMPORARY on database {db} is"
            f" PUBLIC's, and only its owner may take it): REVOKE TEMPORARY ON DATABASE"
            f' "{db}" FROM PUBLIC, then GRANT it to the logins that run the ETL'
        ]
    lost = list(conn.execute(_LOST_TEMP, {"r": role, "d": db}).scalars())
    if not lost:
        return []
    named = ", ".join(lost[:10]) + (" ..." if len(lost) > 10 else "")
    return [
        f"these logins may no longer create temporary tables in {db}: {named}; one that"
        f" runs cdms outside the cdms_owner group needs GRANT TEMPORARY ON DATABASE"
        f' "{db}" TO it'
    ]


def _current_user(conn: Connection) -> str:
    return str(conn.execute(sa.text("SELECT current_user")).scalar())


def _verifier(conn: Connection, role: str, password: str) -> str:
    """The password's SCRAM-SHA-256 verifier, computed here by libpq, as a quoted literal
    (DDL takes no parameters). PostgreSQL stores a verifier as it is: the password itself
    never travels, so it is in no server log (``log_statement = ddl``) or statement
    statistics."""
    from psycopg import sql

    raw = conn.connection.driver_connection
    assert raw is not None
    verifier = raw.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
    return sql.Literal(verifier.decode("ascii")).as_string(raw)


def _grant_read(conn: Connection, role: str) -> None:
    conn.execute(sa.text(f"GRANT USAGE ON SCHEMA {SCHEMA} TO {role}"))
    conn.execute(sa.text(f"GRANT SELECT ON ALL TABLES IN SCHEMA {SCHEMA} TO {role}"))


def publish(conn: Connection, model: Model, role: str, password: str | None) -> Published:
    """The views and the role that reads them (and nothing else), in one transaction; one
    publisher at a time from the start (a second one updating the role's catalog row at the
    same time fails with "tuple concurrently updated")."""
    _lock(conn)
    ensure_role(conn, role, password)
    warnings = _limit_disk(conn, role)
    done = publish_views(conn, model, wait_s=PUBLISH_WAIT_S, queue_s=PUBLISH_QUEUE_S)
    db = str(conn.execute(sa.text("SELECT current_database()")).scalar())
    conn.execute(sa.text(f'GRANT CONNECT ON DATABASE "{db}" TO {role}'))
    warnings += _no_temp(conn, db, role)
    # nothing but bi: no schema of the application, whatever was granted before
    for schema in conn.execute(
        sa.text(
            "SELECT nspname FROM pg_namespace WHERE nspname <> :s"
            " AND nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'"
        ),
        {"s": SCHEMA},
    ).scalars():
        conn.execute(sa.text(f'REVOKE ALL ON ALL TABLES IN SCHEMA "{schema}" FROM {role}'))
        conn.execute(sa.text(f'REVOKE ALL ON SCHEMA "{schema}" FROM {role}'))
    _grant_read(conn, role)
    readers = sorted({*done.readers, role})
    return Published(done.views, readers, done.fingerprint, tuple(warnings))


def drop_role(conn: Connection, role: str) -> None:
    """Remove the BI role's rights in this database and, if it holds none elsewhere, the role
    (roles are cluster-wide). Only a role made by ``ensure_role``."""
    check_role_name(role)
    mark = conn.execute(
        sa.text("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = :r"),
        {"r": role},
    ).first()
    if mark is None or mark[0] != ROLE_MARK:
        return
    conn.execute(sa.text(f"DROP OWNED BY {role}"))
    db = conn.execute(sa.text("SELECT current_database()")).scalar()
    conn.execute(sa.text(f'REVOKE ALL ON DATABASE "{db}" FROM {role}'))
    conn.execute(sa.text(f"DROP ROLE {role}"))
