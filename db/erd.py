"""The entity-relationship diagram of the database, read from the live catalog.

``read_catalog`` collects the tables, columns, keys and foreign keys of the schemas
``app``, ``dw`` and ``ml`` from ``pg_catalog``; ``render`` turns them into a Markdown page
with a Mermaid ``erDiagram``. The output is deterministic (tables and relationships sorted,
columns in table order), so ``docs/erd.md`` can be checked for staleness in a test.

Relationship markers follow from each foreign key: the parent side is ``||`` (exactly one)
when every referencing column is NOT NULL, else ``|o``; the child side is ``o|`` when the
referencing columns are unique in the child, else ``o{``; the line is solid (identifying)
when the referencing columns are part of the child's primary key, else dotted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import sqlalchemy as sa

from db.errors import CdmsError

SCHEMAS: tuple[str, ...] = ("app", "dw", "ml")
ERD_COMMAND = "cdms db erd"


class StaleErdError(CdmsError):
    code = "STALE"


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # format_type(), e.g. "numeric(12,2)"
    not_null: bool


@dataclass(frozen=True)
class ForeignKey:
    name: str
    columns: tuple[str, ...]
    parent: str  # "schema.table"
    parent_columns: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    unique: tuple[tuple[str, ...], ...]  # column sets of unique, non-partial indexes
    foreign_keys: tuple[ForeignKey, ...]

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


# Tables (not partitions: a partitioned table is drawn once) and their live columns.
_COLUMNS = sa.text(
    """
    SELECT n.nspname AS schema, c.relname AS table_name, a.attname AS column_name,
           format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null
      FROM pg_class AS c
      JOIN pg_namespace AS n ON n.oid = c.relnamespace
      JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
     WHERE n.nspname = ANY (:schemas)
       AND c.relkind IN ('r', 'p')
       AND NOT c.relispartition
     ORDER BY n.nspname, c.relname, a.attnum
    """
)

# Primary keys, unique indexes on plain columns, and foreign keys, columns in key order.
_KEYS = sa.text(
    """
    SELECT n.nspname AS schema, c.relname AS table_name, 'u' AS kind, ic.relname AS name,
           array(SELECT a.attname
                   FROM unnest(i.indkey::smallint[]) WITH ORDINALITY AS k (attnum, ord)
                   JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum = k.attnum
                  ORDER BY k.ord) AS columns,
           i.indisprimary AS is_primary,
           NULL::text AS parent, NULL::text[] AS parent_columns
      FROM pg_index AS i
      JOIN pg_class AS c ON c.oid = i.indrelid
      JOIN pg_class AS ic ON ic.oid = i.indexrelid
      JOIN pg_namespace AS n ON n.oid = c.relnamespace
     WHERE n.nspname = ANY (:schemas)
       AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
       AND NOT c.relispartition
    UNION ALL
    SELECT n.nspname, c.relname, 'f', con.conname,
           array(SELECT a.attname
                   FROM unnest(con.conkey) WITH ORDINALITY AS k (attnum, ord)
                   JOIN pg_attribute AS a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
                  ORDER BY k.ord),
           false,
           pn.nspname || '.' || pc.relname,
           array(SELECT a.attname
                   FROM unnest(con.confkey) WITH ORDINALITY AS k (attnum, ord)
                   JOIN pg_attribute AS a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
                  ORDER BY k.ord)
      FROM pg_constraint AS con
      JOIN pg_class AS c ON c.oid = con.conrelid
      JOIN pg_namespace AS n ON n.oid = c.relnamespace
      JOIN pg_class AS pc ON pc.oid = con.confrelid
      JOIN pg_namespace AS pn ON pn.oid = pc.relnamespace
     WHERE n.nspname = ANY (:schemas)
       AND con.contype = 'f'
       AND con.conparentid = 0
       AND NOT c.relispartition
     ORDER BY 1, 2, 3, 4
    """
)


def read_catalog(conn: sa.Connection, schemas: tuple[str, ...] = SCHEMAS) -> list[Table]:
    """Every table of ``schemas`` with its columns and keys, sorted by schema and name."""
    params = {"schemas": list(schemas)}
    columns: dict[tuple[str, str], list[Column]] = {}
    for r in conn.execute(_COLUMNS, params):
        columns.setdefault((r.schema, r.table_name), []).append(
            Column(r.column_name, r.type, r.not_null)
        )
    primary: dict[tuple[str, str], tuple[str, ...]] = {}
    unique: dict[tuple[str, str], list[tuple[str, ...]]] = {}
    foreign: dict[tuple[str, str], list[ForeignKey]] = {}
    for r in conn.execute(_KEYS, params):
        key = (r.schema, r.table_name)
        cols = tuple(r.columns)
        if r.kind == "f":
            foreign.setdefault(key, []).append(
                ForeignKey(r.name, cols, r.parent, tuple(r.parent_columns))
            )
            continue
        unique.setdefault(key, []).append(cols)
        if r.is_primary:
            primary[key] = cols
    return [
        Table(
            schema=schema,
            name=name,
            columns=tuple(cols),
            primary_key=primary.get((schema, name), ()),
            unique=tuple(sorted(unique.get((schema, name), []))),
            foreign_keys=tuple(foreign.get((schema, name), [])),
        )
        for (schema, name), cols in sorted(columns.items())
    ]


class _Mermaid:
    """Mermaid's erDiagram grammar: words without spaces or commas."""

    SHORT_TYPES: ClassVar[dict[str, str]] = {
        "timestamp with time zone": "timestamptz",
        "timestamp without time zone": "timestamp",
        "time with time zone": "timetz",
        "time without time zone": "time",
        "character varying": "varchar",
        "character": "char",
        "double precision": "float8",
        "bit varying": "varbit",
    }

    @staticmethod
    def entity(qualified: str) -> str:
        return qualified.replace(".", "_")

    @classmethod
    def type_word(cls, pg_type: str) -> str:
        """The type without modifiers, as one word ("numeric(12,2)" -> "numeric")."""
        array = pg_type.endswith("[]")
        base = pg_type.removesuffix("[]")
        base = base.split("(", 1)[0].strip()
        base = cls.SHORT_TYPES.get(base, base).replace(" ", "_").replace('"', "")
        return base + ("[]" if array else "")


def _column_line(table: Table, column: Column, fk_columns: set[str]) -> str:
    markers = []
    if column.name in table.primary_key:
        markers.append("PK")
    if column.name in fk_columns:
        markers.append("FK")
    if (column.name,) in table.unique and column.name not in table.primary_key:
        markers.append("UK")
    word = _Mermaid.type_word(column.type)
    notes = []
    if "(" in column.type:  # modifiers do not fit Mermaid's type word
        notes.append(column.type)
    if not column.not_null and column.name not in table.primary_key:
        notes.append("null")
    line = f"        {word} {column.name}"
    if markers:
        line += " " + ", ".join(markers)
    if notes:
        line += ' "' + ", ".join(notes) + '"'
    return line


def _relationship(table: Table, fk: ForeignKey) -> str:
    by_name = {c.name: c for c in table.columns}
    mandatory = all(by_name[c].not_null for c in fk.columns)
    unique_child = any(set(u) <= set(fk.columns) for u in table.unique)
    identifying = bool(table.primary_key) and set(fk.columns) <= set(table.primary_key)
    parent_end = "||" if mandatory else "|o"
    child_end = "o|" if unique_child else "o{"
    line = "--" if identifying else ".."
    label = ", ".join(fk.columns)
    return (
        f"    {_Mermaid.entity(fk.parent)} {parent_end}{line}{child_end} "
        f'{_Mermaid.entity(table.qualified)} : "{label}"'
    )


def render(tables: list[Table], schemas: tuple[str, ...] = SCHEMAS) -> str:
    """Markdown page with one Mermaid erDiagram of ``tables``."""
    lines = [
        "# Entity-relationship diagram",
        "",
        f"Generated by `{ERD_COMMAND}` from the live catalog of the schemas "
        + ", ".join(f"`{s}`" for s in schemas)
        + "; do not edit by hand. Re-run it after changing a migration "
        "(`tests/db/test_erd.py` fails while this file is stale).",
        "",
        "Keys: PK primary key, FK foreign key, UK unique. Lines: `||` exactly one, `|o` zero "
        "or one, `o{` zero or more, `o|` zero or one on the child side; solid when the "
        "foreign key is part of the child's primary key. Column notes give types with "
        'modifiers in full and "null" for nullable columns.',
        "",
    ]
    for schema in schemas:
        names = [t.name for t in tables if t.schema == schema]
        lines.append(f"- `{schema}` ({len(names)} tables): " + (", ".join(names) or "none"))
    lines += ["", "```mermaid", "erDiagram"]
    for table in tables:
        fk_columns = {c for fk in table.foreign_keys for c in fk.columns}
        lines.append(f"    {_Mermaid.entity(table.qualified)} {{")
        lines += [_column_line(table, column, fk_columns) for column in table.columns]
        lines.append("    }")
    relationships = sorted(
        _relationship(table, fk) for table in tables for fk in table.foreign_keys
    )
    lines += relationships
    lines += ["```", ""]
    return "\n".join(lines)


def generate(engine: sa.Engine, schemas: tuple[str, ...] = SCHEMAS) -> str:
    """The ERD page of the database behind ``engine``."""
    with engine.connect() as conn:
        return render(read_catalog(conn, schemas), schemas)


def generate_from_migrations(url: str, schemas: tuple[str, ...] = SCHEMAS) -> str:
    """The ERD page of what the migrations build, read from a throw-away database.

    ``url`` names the server (any database on it); a scratch database is created there,
    migrated from the current ``db/sql`` files, read and dropped. This is what the ERD test
    compares with, whatever state (or edited-in-place revision) the usual database is in.
    """
    import secrets

    from db.engine import (
        dispose_engine,
        drop_database,
        ensure_database,
        make_engine,
        with_database,
    )
    from db.migrate import upgrade

    name = f"cdms_erd_{secrets.token_hex(4)}"
    scratch = with_database(url, name)
    ensure_database(url, name)
    try:
        upgrade(scratch)
        return generate(make_engine(scratch), schemas)
    finally:
        dispose_engine(scratch)
        drop_database(url, name)
