"""``cdms persisted add FILE... | list | remove HASH|NAME...``: the persisted-query allow-list
(docs/security.md)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import typer
from rich.table import Table

from api.cli.common import app_engine, console, plain, utf8
from db.errors import BadUserInputError

app = typer.Typer(help="Persisted GraphQL queries (the allow-list).", no_args_is_help=True)

MAX_DOCUMENT_BYTES = 1_000_000  # a request body's (CDMS_MAX_BODY_BYTES' default)


@app.command("add")
def add(
    files: list[Path] = typer.Argument(..., help="Files holding one GraphQL document each."),
) -> None:
    """Register documents; prints each one's sha256 (what clients send). Idempotent. A
    document that does not validate against the schema, or is over the server's size
    limits (tokens, the length of a name, depth, aliases, fields), is refused (all files or
    none)."""
    import sqlalchemy as sa
    from graphql import GraphQLError, OperationDefinitionNode, parse, validate

    from api.rules import Limits, check_names, check_size, shape_of
    from db.engine import transaction
    from db.errors import QueryTooComplexError
    from schema.app import graphql_schema

    limits = Limits()
    docs: list[tuple[str, str, str]] = []
    for file in files:
        try:
            with file.open("rb") as f:  # (a device or a pipe may never end)
                raw = f.read(MAX_DOCUMENT_BYTES + 1)
            text = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BadUserInputError(f"cannot read {file}: {exc}", field="file") from None
        if len(raw) > MAX_DOCUMENT_BYTES:
            raise BadUserInputError(
                f"{file} is longer than {MAX_DOCUMENT_BYTES:,} bytes", field="file"
            )
        try:
            document = parse(text, max_tokens=limits.max_tokens)
        except GraphQLError as exc:
            raise BadUserInputError(f"{file} is not a GraphQL document: {exc.message}") from None
        try:  # an alias repeated by every row of the answer, or another name as long
            check_names(document, limits)
        except QueryTooComplexError as exc:
            raise BadUserInputError(f"{file} is refused on every call: {exc}") from None
        # what every call of it would be refused for (the per-request rules - cost, depth,
        # a caller's roles - are the server's, with the caller and the variables)
        errors = validate(graphql_schema(), document, max_errors=5)
        if errors:
            said = "; ".join(
                e.message
                + "".join(
                    f" (line {at.line}, column {at.column})" for at in (e.locations or [])[:1]
                )
                for e in errors
            )
            raise BadUserInputError(f"{file} does not validate against the schema: {said}")
        for op in document.definitions:
            if isinstance(op, OperationDefinitionNode):
                try:
                    check_size(shape_of(graphql_schema(), document, op, limits), limits)
                except QueryTooComplexError as exc:
                    raise BadUserInputError(f"{file} is refused on every call: {exc}") from None
        name = utf8(file.stem, f"the name of {file} (the query's name)")
        if not name.isprintable():  # `persisted list` prints it on a terminal
            raise BadUserInputError(
                f"the name of {file} (the query's name) has control characters", field="name"
            )
        docs.append((hashlib.sha256(text.encode("utf-8")).hexdigest(), name, text))
    with transaction(app_engine()) as conn:  # all files or none
        for sha, name, text in docs:
            conn.execute(
                sa.text(
                    "INSERT INTO app.persisted_queries (sha256, name, query)"
                    " VALUES (:h, :n, :q) ON CONFLICT (sha256) DO NOTHING"
                ),
                {"h": sha, "n": name, "q": text},
            )
    for sha, name, _ in docs:
        console.print(f"{sha}  {plain(name)}", highlight=False)


@app.command("remove")
def remove(
    keys: list[str] = typer.Argument(..., help="sha256 hashes or names of registered queries."),
) -> None:
    """Withdraw documents from the allow-list (all named or none); servers stop accepting
    them within CDMS_APIKEY_CACHE_SECONDS (default 5 s)."""
    import sqlalchemy as sa

    from db.engine import transaction
    from db.errors import NotFoundError

    for key in keys:
        utf8(key, "a hash or name")
    with transaction(app_engine()) as conn:  # all or none
        # every key looked up before anything is deleted: a document named twice (by its
        # hash and its name, or one key repeated) is found by each key, not refused
        found: dict[str, str | None] = {}
        for key in keys:
            rows = conn.execute(
                sa.text(
                    "SELECT sha256, name FROM app.persisted_queries"
                    " WHERE sha256 = lower(:k) OR name = :k FOR UPDATE"
                ),
                {"k": key},
            ).all()
            if not rows:
                raise NotFoundError(f"no persisted query has the hash or name {key!r}")
            found.update((r.sha256, r.name) for r in rows)
        removed = conn.execute(
            sa.text(
                "DELETE FROM app.persisted_queries WHERE sha256 = ANY(:shas) RETURNING sha256, name"
            ),
            {"shas": list(found)},
        ).all()
    for sha, name in removed:
        console.print(f"removed {sha}  {plain(name)}", highlight=False)


@app.command("list")
def list_() -> None:
    """The registered documents."""
    import sqlalchemy as sa

    with app_engine().connect() as conn:
        rows = conn.execute(
            sa.text("SELECT sha256, name, created_at FROM app.persisted_queries ORDER BY name")
        ).all()
    table = Table("name", "created")
    table.add_column("sha256", no_wrap=True)
    for r in rows:
        table.add_row(plain(r.name), f"{r.created_at:%Y-%m-%d %H:%M}", r.sha256)
    console.print(table if rows else "no persisted queries yet: cdms persisted add FILE")
