"""The one executor of reads: every relational field of every operation is compiled by
schema/plan.py and schema/sql.py into ONE statement and run here.

- A query whose root fields are all relational (the catalog's roots, ``__typename``) is
  answered without any GraphQL execution: the statement comes from the plan cache, its
  parameters are bound from the request's variables, and it runs in one round trip
  (schema/lane.py); PostgreSQL's JSON text is the response's ``data``.
- Anything else runs on the Strawberry schema: mutations, subscriptions, the resolver
  roots (cube, models, what-if predictions) and queries mixing them with relational
  roots. There every relational field — a relational root, a mutation's payload (read in
  the operation's write transaction), a subscription event's order — is compiled the same
  way (:meth:`Reads.field`, :meth:`Reads.node`), and the entity types' fields only read
  their value out of the statement's JSON.

Plans are cached per (query text, operation, the structure of the variables) and, inside,
per the values of the few variables the SQL text depends on (page sizes, orderBy,
@include/@skip): a request with other ids, filter values or cursors reuses the statement.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import json
import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from cachetools import LRUCache
from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLObjectType,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    get_named_type,
)
from graphql.execution.collect_fields import FieldDetails
from graphql.execution.values import VariableValues
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from db.errors import BadUserInputError, CdmsError, DatabaseUnavailableError, QueryTooComplexError
from db.replicas import Router, commit_lsn, parse_lsn, router_for
from schema import lane
from schema import plan as P
from schema.catalog import ENTITIES, ROOTS, Entity
from schema.context import ApiLimits, Context
from schema.cube.fast import execute_fast
from schema.errors import classify
from schema.scalars import (
    parse_date,
    parse_datetime,
    parse_decimal,
    parse_id,
    parse_money,
    parse_text,
)
from schema.sql import MAX_PARAMS, Param, Statement, statement
from semantic.cache import footprint

log = logging.getLogger("cdms.api.execute")

CACHE_SIZE = 1024  # the plan cache's room, in shares of SHARE_BYTES
SHARE_BYTES = 4096
PARAM_BYTES = 160  # a statement's Param as kept: ~140 B measured with tracemalloc
CURSOR_MAX_CHARS = 2_000


# the HTTP status of an operation refused for what it asked (Result.refused)
REFUSED = {
    "BAD_USER_INPUT": 400,
    "QUERY_TOO_COMPLEX": 400,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "CONFLICT": 409,
    "INVALID_TRANSITION": 409,
    "OUT_OF_STOCK": 409,
    "RATE_LIMITED": 429,  # a quota of the shop's rules (a customer's feedback a day)
}


@dataclass
class Result:
    """One operation's answer: ``data``/``errors``/``extensions``, or the ``data`` JSON
    text as PostgreSQL wrote it. ``status`` is 400 when nothing ran (a request error); the
    HTTP status also tells :attr:`unavailable` (503) and :attr:`refused` (4xx)."""

    data: Any = None
    errors: list[Any] = field(default_factory=list)  # formatted GraphQL errors
    extensions: dict[str, Any] = field(default_factory=dict)
    raw_data: str | None = None
    status: int = 200
    wrote: bool = False  # the operation's writes committed (its commitLsn may be unreadable)

    @property
    def unavailable(self) -> bool:
        """Nothing answered because the database is unreachable (HTTP 503 "try again")."""
        return self._answered_nothing() and self._codes() == {"SERVICE_UNAVAILABLE"}

    @property
    def refused(self) -> int | None:
        """The 4xx of an operation that answered and wrote nothing because of what it asked
        (None otherwise): every error one of the codes of :data:`REFUSED`, whether found
        while planning or by a resolver root (what-if inputs, cube arguments, a mutation's
        input, id or state; every root is non-null, so one such error nulls the data). Mixed
        codes: 400."""
        codes = self._codes()
        if not self._answered_nothing() or not codes <= REFUSED.keys():
            return None
        statuses = {REFUSED[c] for c in codes}
        return statuses.pop() if len(statuses) == 1 else 400

    @property
    def retry_after(self) -> int | None:
        """The seconds a refused operation's RATE_LIMITED error tells a client to wait."""
        if self.refused != 429:
            return None
        waits = [(e.get("extensions") or {}).get("retryAfter") for e in self.errors]
        known = [w for w in waits if isinstance(w, int) and not isinstance(w, bool)]
        return max(known) if known else None

    def _answered_nothing(self) -> bool:
        """No data, errors, and nothing written (an operation's writes are committed only
        when each of its mutation fields answered, so with data; never an answer that
        reads as nothing done when something was)."""
        return not self.wrote and self.raw_data is None and self.data is None and bool(self.errors)

    def _codes(self) -> set[str]:
        return {str((e.get("extensions") or {}).get("code")) for e in self.errors}

    def body(self) -> dict[str, Any]:
        data = json.loads(self.raw_data) if self.raw_data is not None else pg_floats(self.data)
        out: dict[str, Any] = {"data": data}
        if self.errors:
            out["errors"] = self.errors
        if self.extensions:
            out["extensions"] = self.extensions
        return out

    def json_bytes(self) -> bytes:
        """The answer as the response body: UTF-8, text as stored and not ``\\u``-escaped
        (docs/api.md, "Formats"), as PostgreSQL writes the compiled reads' JSON and
        Starlette its JSON responses and WebSocket messages. (Text holds no lone UTF-16
        surrogate: a request that sends one is refused before it runs, api/pipeline.py.)"""
        return self.json_text().encode("utf-8")

    def json_text(self) -> str:
        """:meth:`json_bytes` as text (a WebSocket message's payload): the rows as
        PostgreSQL wrote them are never parsed into Python objects (an 8 MB answer made
        ~70 MB of them)."""
        if self.raw_data is None:
            return _dumps(self.body())
        parts = ['{"data":', self.raw_data]  # the rows as PostgreSQL wrote them, unparsed
        for key in ("errors", "extensions"):
            if value := getattr(self, key):
                parts.append(f',"{key}":' + _dumps(value))
        parts.append("}")
        return "".join(parts)  # (one copy of the rows' text)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def pg_floats(value: Any) -> Any:
    """``value`` with each float that has no fraction as an int: ``4``, as PostgreSQL
    writes a float8 (docs/api.md, "Formats"), where graphql-core's Float gives ``4.0``
    (the answers executed by Strawberry: mutation payloads, mixed queries, events)."""
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, dict):
        return {k: pg_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [pg_floats(v) for v in value]
    return value


def failed(exc: CdmsError, request_id: str, status: int = 200) -> Result:
    """``exc`` as the answer's one error (a field's refusal at the field: P.FieldError)."""
    original = exc.error if isinstance(exc, P.FieldError) else exc
    error = classify(GraphQLError(exc.message, original_error=original), request_id)
    if isinstance(exc, P.FieldError) and exc.location is not None:
        error.locations = [exc.location]  # (a statement keeps the place, not the node)
    return Result(errors=[error.formatted], status=status)


# --- binding -------------------------------------------------------------------------------


def _escape(text: str) -> str:
    return text.replace("/", "//").replace("%", "/%").replace("_", "/_")


# a parameter's value by its conversion (schema.sql.Param.conv)
_CONVERT: dict[str, Callable[[Any], Any]] = {
    "id": parse_id,
    "int": int,
    "float": float,
    "text": parse_text,
    "bool": bool,
    "enum": lambda v: parse_text(v).lower(),
    "decimal": parse_money,
    "datetime": lambda v: v if isinstance(v, dt.datetime) else parse_datetime(v),
    "date": lambda v: v if type(v) is dt.date else parse_date(v),
    "like": lambda v: f"%{_escape(parse_text(v))}%",
    "prefix": lambda v: f"{_escape(parse_text(v))}%",
}


def _convert(conv: str, value: Any) -> Any:
    """``conv``: a name of _CONVERT, ``array:`` before it for a list, and for a text column
    ``:<chars>:<field>`` after it, the most characters the column holds."""
    if value is None:
        return None
    if conv.startswith("array:"):
        return [_convert(conv[len("array:") :], v) for v in value]
    name, _, bound = conv.partition(":")
    if bound:
        most, _, field = bound.partition(":")
        if len(str(value)) > int(most):
            raise BadUserInputError(
                f"a filter's text for {field} may hold at most {most} characters (the"
                f" longest {field} there is), got {len(str(value)):,}",
                field=field,
                reason="too long",
                max=int(most),
            )
    return _CONVERT[name](value)


def decode_cursor(text: Any, signature: str, arg: str) -> list[Any]:
    """The key values a cursor holds; BAD_USER_INPUT (``field``: ``arg``, the argument that
    gave it) if it is not one of ours or was issued for another ordering."""
    text = str(text)
    try:
        if len(text) > CURSOR_MAX_CHARS:  # (ours hold one value per ordering key)
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        data = json.loads(raw, parse_float=Decimal)
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise BadUserInputError("invalid cursor", field=arg) from None
    if not isinstance(data, list) or not data or not isinstance(data[0], str):
        raise BadUserInputError("invalid cursor", field=arg)
    if data[0] != signature:
        raise BadUserInputError(
            "cursor was issued for another orderBy; restart pagination", field=arg
        )
    return list(data[1:])


def bind(stmt: Statement, variables: Mapping[str, Any]) -> dict[str, Any]:
    """The statement's parameters for these (coerced) variables; BAD_USER_INPUT for a value
    that does not convert (an id, a cursor, a date-time...), at the field that gave it
    (P.FieldError: its place, and a cursor's argument as its ``field``)."""
    out: dict[str, Any] = {}
    cursors: dict[tuple[Any, str], list[Any]] = {}
    raws = [P.resolve(p.src, variables) for p in stmt.params]
    _bounded(raws)
    p: Param | None = None
    try:
        for p in stmt.checks:
            decode_cursor(P.resolve(p.src, variables), p.cursor[0] if p.cursor else "", p.at.arg)
        for i, (p, raw) in enumerate(zip(stmt.params, raws, strict=True)):
            if p.cursor is None:
                out[f"p{i}"] = _convert(p.conv, raw)
                continue
            signature, index = p.cursor
            values = cursors.get((raw, signature))
            if values is None:
                values = cursors[(raw, signature)] = decode_cursor(raw, signature, p.at.arg)
            if index >= len(values):
                raise BadUserInputError("invalid cursor", field=p.at.arg)
            out[f"p{i}"] = _cursor_value(p.conv, values[index], p.at.arg)
    except CdmsError as exc:
        if p is None:
            raise
        raise P.FieldError(exc, p.at.location) from None
    return out


def _bounded(raws: list[Any]) -> None:
    """QUERY_TOO_COMPLEX past ``MAX_PARAMS`` values, an `in` list counting each of its items,
    before any is converted (300,000 ids held the event loop 1.1-1.5 s)."""
    values = sum(len(r) if isinstance(r, list | tuple) else 1 for r in raws)
    if values > MAX_PARAMS:
        raise QueryTooComplexError(
            f"the query binds {values:,} values (filter values and `in` lists item by item,"
            f" cursors, ids), more than {MAX_PARAMS:,}: send fewer",
            limit=MAX_PARAMS,
        )


def _cursor_value(conv: str, value: Any, arg: str) -> Any:
    """A key value of a cursor (given in argument ``arg``), if a row could hold it (a
    crafted cursor must fail here, before anything runs, not in PostgreSQL)."""
    try:
        if conv in ("id", "int"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError
            if not -(2**63) <= value < 2**63:
                raise ValueError
            return value
        if conv == "datetime":
            return dt.datetime.fromisoformat(value)
        if conv == "date":
            return dt.date.fromisoformat(value)
        if conv == "decimal":
            return parse_decimal(str(value))
        if conv == "float":
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
            return number
        if not isinstance(value, str):
            raise ValueError
        return parse_text(value)
    except (ValueError, TypeError, ArithmeticError, CdmsError):
        raise BadUserInputError("invalid cursor", field=arg) from None


# --- the plan cache ------------------------------------------------------------------------


def frozen(value: Any) -> Any:
    """A hashable copy of a JSON value (a cache key)."""
    if isinstance(value, dict):
        return tuple((k, frozen(v)) for k, v in sorted(value.items()))
    if isinstance(value, list):
        return tuple(frozen(v) for v in value)
    return value


def _shares(key_bytes: int, stmt: Statement | None = None) -> int:
    """The shares of the plan cache an entry takes: one per started ``SHARE_BYTES`` of its
    key (:func:`semantic.cache.footprint`: the query text, the variables' structure) and of
    its statement's text and parameters."""
    kept = key_bytes
    if stmt is not None:
        kept += footprint(stmt.sql) + PARAM_BYTES * (len(stmt.params) + len(stmt.checks))
    return 1 + kept // SHARE_BYTES


def shape(value: Any) -> Any:
    """The structure of a variable value: which keys, how many items, null or not. A
    list of scalars is one value of the statement (schema.plan binds it whole): its length
    is not structure, so 1 or 300 ids in an `in` list share one statement."""
    if isinstance(value, dict):
        return tuple((k, shape(v)) for k, v in sorted(value.items()))
    if isinstance(value, list):
        if value and not any(isinstance(v, dict | list) for v in value):
            return ("[", "scalars")  # one bound array (an `in` list), whatever its length
        return ("[", tuple(shape(v) for v in value))
    if value is None:
        return None
    if isinstance(value, bool):  # @include/@skip, isNull: cheap to keep in the key
        return value
    return 0


class Reads:
    """Compiles and caches the statements of one process's operations."""

    def __init__(self, gschema: GraphQLSchema, limits: ApiLimits) -> None:
        self.gschema = gschema
        self.limits = limits
        # (query key, variable structure) -> the variable paths the statement's text read;
        # (that key, those paths, their values) -> the statement: both bounded by size. An
        # entry takes one share of CACHE_SIZE per started SHARE_BYTES of what it keeps
        # (its key, the query text included, and its statement: :func:`_shares`), so a few
        # large ones (long filters, long query texts) hold the room of many small ones
        self._reads: LRUCache[Any, tuple[int, tuple[P.Var, ...]]] = LRUCache(
            maxsize=CACHE_SIZE, getsizeof=lambda entry: entry[0]
        )
        self._cache: LRUCache[Any, tuple[int, Statement]] = LRUCache(
            maxsize=CACHE_SIZE, getsizeof=lambda entry: entry[0]
        )
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """The statements held."""
        return len(self._cache)

    @property
    def held(self) -> int:
        """The shares the statements take (:func:`_shares`)."""
        return int(self._cache.currsize)

    def statement(
        self,
        key: Any,
        build: Callable[[P.Planner], list[P.RootSel]],
        document: DocumentNode,
        operation: OperationDefinitionNode,
        variables: VariableValues,
    ) -> Statement:
        """The statement ``build`` plans, from the cache when the key, the structure of the
        variables and the values the text depends on match."""
        coerced = variables.coerced
        full_key = (key, shape(coerced))
        with self._lock:
            held = self._reads.get(full_key)
        reads = None if held is None else held[1]
        if reads is not None:
            try:
                values = tuple(frozen(P.value_at(coerced, v)) for v in reads)
            except (KeyError, IndexError, TypeError):
                values = None
            with self._lock:
                found = None if values is None else self._cache.get((full_key, reads, values))
            if found is not None:
                return found[1]
        planner = P.Planner(self.gschema, document, operation, variables, self.limits)
        roots = build(planner)
        stmt = statement(roots, coerced)
        reads = tuple(sorted(planner.read, key=repr))
        values = tuple(frozen(P.value_at(coerced, v)) for v in reads)
        key_bytes = footprint(full_key)
        kept_reads = _shares(key_bytes + footprint(reads))
        kept_stmt = _shares(key_bytes + footprint(values), stmt)
        with self._lock:  # none over an eighth of the room is kept
            if kept_reads <= CACHE_SIZE // 8:
                self._reads[full_key] = (kept_reads, reads)
            if kept_stmt <= CACHE_SIZE // 8:
                self._cache[(full_key, reads, values)] = (kept_stmt, stmt)
        return stmt

    # --- operations whose roots are all relational ------------------------------------
    @staticmethod
    def relational(operation: OperationDefinitionNode, names: Iterable[str]) -> bool:
        """A query whose root fields ``names`` are all the catalog's."""
        return operation.operation is OperationType.QUERY and all(
            name in ROOTS or name == "__typename" for name in names
        )

    @staticmethod
    def cubes(operation: OperationDefinitionNode, names: Iterable[str]) -> bool:
        """A query of ``cube`` fields alone: PostgreSQL writes its rows (schema.cube.fast)."""
        found = set(names)
        only = found <= {"cube", "__typename"}
        return operation.operation is OperationType.QUERY and only and "cube" in found

    def query_statement(
        self, query: str, document: DocumentNode, operation: OperationDefinitionNode,
        variables: VariableValues,
    ) -> Statement:  # fmt: skip
        name = operation.name.value if operation.name else None

        def build(planner: P.Planner) -> list[P.RootSel]:
            return [planner.root(k, d) for k, d in planner.roots().items()]

        return self.statement(("query", query, name), build, document, operation, variables)

    def root_fields(
        self, document: DocumentNode, operation: OperationDefinitionNode, variables: VariableValues
    ) -> dict[str, list[FieldDetails]]:
        planner = P.Planner(self.gschema, document, operation, variables, self.limits)
        return planner.roots()

    # --- relational fields under Strawberry execution ----------------------------------
    def field_statement(
        self, at: Located, entity: Entity | None = None, id_: Any = None
    ) -> Statement:
        """The statement of one field: a relational root (``entity`` None) or ``entity``
        row ``id_`` with the field's selection (a mutation's payload, an event's object),
        under the response key ``data``."""
        name = at.operation.name.value if at.operation.name else None

        def build(planner: P.Planner) -> list[P.RootSel]:
            if entity is None:
                return [planner.root("data", at.details)]
            return [planner.by_id("data", entity, P.Lit(id_), at.details)]

        key = ("field", at.query, name, at.path, entity.name if entity else None, id_)
        return self.statement(key, build, at.document, at.operation, at.variables)


@dataclass(frozen=True)
class Located:
    """A field of an operation found by its response path."""

    query: str
    document: DocumentNode
    operation: OperationDefinitionNode
    variables: VariableValues
    path: tuple[str, ...]
    details: list[FieldDetails]


def locate(reads: Reads, info: Any) -> Located:
    """The field ``info`` resolves, as graphql-core collects it from the operation the
    executor put on the context (api.pipeline.Prepared), found by the field's path."""
    op = info.context.operation
    keys = [k for k in info.path.as_list() if isinstance(k, str)]
    planner = P.Planner(reads.gschema, op.document, op.operation, op.coerced, reads.limits)
    root = reads.gschema.get_root_type(op.operation.operation)
    assert root is not None
    parent: GraphQLObjectType = root
    details = planner.roots()[keys[0]]
    for key in keys[1:]:
        gfield = parent.fields[details[0].node.name.value]
        parent = P.object_type(gfield)
        details = planner.subfields(parent, details)[key]
    return Located(op.query, op.document, op.operation, op.coerced, tuple(keys), details)


def _run(conn: Connection, stmt: Statement, params: dict[str, Any]) -> Any:
    row = conn.exec_driver_sql(stmt.sql, params).one()
    return row[0]["data"]


class Executor:
    """Runs prepared operations (api/pipeline.py) for every transport."""

    def __init__(
        self,
        schema: Any,
        gschema: GraphQLSchema,
        engine: Engine,
        limits: ApiLimits,
        *,
        cube_sql: bool = True,
        router: Router | None = None,
    ) -> None:
        self.schema = schema
        self.engine = engine
        self.router = router or router_for(engine)
        self.limits = limits
        self.cube_sql = cube_sql
        self.reads = Reads(gschema, limits)

    def context(self, principal: Any, **extra: Any) -> Context:
        return Context(
            engine=self.engine,
            limits=self.limits,
            actor=principal.actor,
            role=principal.role,
            customer_id=principal.customer_id,
            reads=self.reads,
            router=self.router,
            **extra,
        )

    async def run(self, prepared: Any, ctx: Context) -> Result:
        """A query or mutation (``prepared``: api.pipeline.Prepared): a query's reads on a
        replica that has replayed the request's ``min_lsn`` (db/replicas.py), a
        mutation on the primary, its answer carrying ``extensions.commitLsn``.

        A mutation's fields write in one transaction (:meth:`Context.run_write`), committed
        here, before its answer is returned, once every field answered (each payload is
        non-null, so one that failed nulls ``data`` and stops the later fields), else
        rolled back: the operation is written all or nothing, and ``data: null`` with an
        error means that nothing was written. A COMMIT that fails is the answer's one error
        (SERVICE_UNAVAILABLE, CONFLICT...). A nullable part of a payload that fails (a
        prediction whose model is not loaded) leaves its write committed: the answer shows
        the rows, with that field null and its error."""
        if prepared.operation.operation == OperationType.QUERY:
            await ctx.route(await self._read_engine(ctx))
            return await self._query(prepared, ctx)
        await ctx.route(None)
        result = await self._query(prepared, ctx)
        try:
            committed = await ctx.end_write(commit=result.data is not None)
        except CdmsError as exc:  # nothing committed (or, the server gone, not known)
            return failed(exc, ctx.request_id)
        if committed:
            result.wrote = True
            try:
                lsn = await run_in_threadpool(commit_lsn, self.engine)
            except SQLAlchemyError as exc:  # committed, then the server went away
                log.warning("no commit position for a write: %s", str(exc).splitlines()[0])
                ctx.min_lsn = None
                ctx.route_primary = True
                return result
            result.extensions = {**result.extensions, "commitLsn": lsn}
            # the batch's later reads see this write too
            ctx.min_lsn = max(ctx.min_lsn or 0, parse_lsn(lsn))
        return result

    def refuses(self, prepared: Any, alone: bool) -> Result | None:
        """A 400 when a relational field of the operation refuses its arguments (page caps,
        orderBy, a cursor, an id), found by planning and binding every such field without
        running anything; else None. The transports ask before running any operation of a
        request, so a batch is refused whole and a mutation is not made. ``alone``: the
        request's only operation (a query of relational roots then plans as it runs)."""
        operation = prepared.operation
        kind = operation.operation
        relational = self.reads.relational(operation, (name for _, name in prepared.shape.roots))
        if alone and relational:
            return None
        coerced = prepared.coerced
        try:
            if relational:  # a batch's read: planned through the cache its run then hits
                stmt = self.reads.query_statement(
                    prepared.query, prepared.document, operation, coerced
                )
                bind(stmt, coerced.coerced)
                return None
            planner = P.Planner(
                self.reads.gschema, prepared.document, operation, coerced, self.limits
            )
            root = self.reads.gschema.get_root_type(kind)
            assert root is not None
            for key, details in planner.roots().items():
                name = details[0].node.name.value
                if name.startswith("__"):
                    continue
                if kind is OperationType.QUERY and name in ROOTS:
                    sels: list[P.RootSel] = [planner.root(key, details)]
                else:
                    sels = self._reads_under(planner, root.fields[name], details)
                for sel in sels:
                    bind(statement([sel], coerced.coerced), coerced.coerced)
        except CdmsError as exc:  # P.FieldError among them
            return failed(exc, "", status=400)
        return None

    def _reads_under(
        self, planner: P.Planner, gfield: Any, details: list[FieldDetails]
    ) -> list[P.RootSel]:
        """The reads a field that is not a relational root makes: a mutation's payload, an
        event's order (rows by id), a cube cell's ``drill { orders }`` (a connection)."""
        gtype = get_named_type(gfield.type)
        if not isinstance(gtype, GraphQLObjectType):
            return []
        entity = ENTITIES.get(gtype.name)
        if entity is not None:
            return [planner.by_id("data", entity, P.Lit(0), details)]
        if gtype.name.endswith("Connection") and gtype.name[: -len("Connection")] in ENTITIES:
            target = ENTITIES[gtype.name[: -len("Connection")]]
            return [planner.connection("data", gfield, details, target, None)]
        out: list[P.RootSel] = []
        for sub in planner.subfields(gtype, details).values():
            name = sub[0].node.name.value
            if not name.startswith("__"):
                out.extend(self._reads_under(planner, gtype.fields[name], sub))
        return out

    async def _read_engine(self, ctx: Context) -> Engine:
        if not self.router.replicas or ctx.route_primary:
            return self.engine
        if ctx.min_lsn is None:
            return self.router.read_engine()
        return await run_in_threadpool(self.router.read_engine, ctx.min_lsn)

    async def _query(self, prepared: Any, ctx: Context) -> Result:
        operation = prepared.operation
        ctx.operation = prepared  # (its cube fields make it heavy for the gate: schema/gate.py)
        # every root field the document may select (whatever @skip/@include decide), known
        # without collecting them; then the ones these variables select
        if self.reads.relational(operation, (name for _, name in prepared.shape.roots)):
            return await self._read(prepared, ctx)
        roots = self.reads.root_fields(prepared.document, operation, prepared.coerced)
        names = [d[0].node.name.value for d in roots.values()]
        if self.reads.relational(operation, names):
            return await self._read(prepared, ctx)
        if self.reads.cubes(operation, names):
            fast = await execute_fast(
                self.reads.gschema, prepared.document, operation, prepared.coerced, ctx
            )
            if fast is not None:
                errors = [classify(e, ctx.request_id).formatted for e in fast.errors]
                extensions = self._extensions({"cube": fast.reports} if fast.reports else {})
                # (no data: None, so that the status tells bad input or an outage)
                raw = None if fast.data == "null" else fast.data
                return Result(errors=errors, extensions=extensions, raw_data=raw)
        result = await self.schema.execute(
            prepared.query,
            variable_values=prepared.variables,
            context_value=ctx,
            operation_name=prepared.operation_name,
        )
        return self._result(result, ctx)

    async def _read(self, prepared: Any, ctx: Context) -> Result:
        try:
            stmt = self.reads.query_statement(
                prepared.query, prepared.document, prepared.operation, prepared.coerced
            )
            params = bind(stmt, prepared.coerced.coerced)
        except CdmsError as exc:  # a refused argument, a value that does not convert: nothing ran
            return failed(exc, ctx.request_id, status=400)
        engine = ctx.read_engine or self.engine
        try:
            text = await self._fetch(engine, stmt.sql, params, ctx)
        except DatabaseUnavailableError as exc:
            if engine is self.engine:
                return failed(exc, ctx.request_id)
            self.router.failed(engine)  # the replica is away: the primary answers
            await ctx.route(None)
            try:
                text = await self._fetch(self.engine, stmt.sql, params, ctx)
            except CdmsError as again:
                return failed(again, ctx.request_id)
        except CdmsError as exc:  # TIMEOUT
            return failed(exc, ctx.request_id)
        except Exception as exc:  # a fault of ours: INTERNAL with the request id, logged
            error = classify(GraphQLError(str(exc), original_error=exc), ctx.request_id)
            return Result(errors=[error.formatted], status=500)
        if not stmt.predictions or lane.PENDING_MARK not in text:
            return Result(raw_data=text)
        from schema.predictions import complete

        data = json.loads(text)
        try:
            errors = await complete(ctx, stmt, data)
        except CdmsError as exc:
            return failed(exc, ctx.request_id)
        return Result(data, [classify(e, ctx.request_id).formatted for e in errors])

    async def _fetch(self, engine: Engine, sql: str, params: dict[str, Any], ctx: Context) -> str:
        call = functools.partial(
            lane.fetch,
            engine,
            sql,
            params,
            actor=ctx.actor,
            timeout_ms=self.limits.statement_timeout_ms,
            role=ctx.role,
            customer_id=ctx.customer_id,
        )
        return await lane.run(call)

    def _result(self, result: Any, ctx: Context) -> Result:
        errors = [classify(e, ctx.request_id).formatted for e in result.errors or []]
        return Result(result.data, errors, self._extensions(result.extensions or {}))

    def _extensions(self, extensions: dict[str, Any]) -> dict[str, Any]:
        if self.cube_sql or "cube" not in extensions:
            return extensions
        hidden = ("sql", "params")
        cube = [{k: v for k, v in e.items() if k not in hidden} for e in extensions["cube"]]
        return {**extensions, "cube": cube}

    async def subscribe(self, prepared: Any, ctx: Context) -> Any:
        """The results of a subscription (or its one pre-execution failure)."""
        ctx.operation = prepared
        stream = await self.schema.subscribe(
            prepared.query,
            variable_values=prepared.variables,
            context_value=ctx,
            operation_name=prepared.operation_name,
        )
        try:
            async for result in stream:  # ExecutionResult, or one PreExecutionError
                yield self._result(result, ctx)
        finally:
            await stream.aclose()


# --- what the Strawberry resolvers call --------------------------------------------------


def reads_of(info: Any) -> Reads:
    found = info.context.reads  # every context is Executor.context's
    assert isinstance(found, Reads)
    return found


async def read_field(info: Any) -> Any:
    """A relational root resolved under Strawberry execution (a query mixing it with a
    resolver root): its statement, on the request's read transaction."""
    reads = reads_of(info)
    at = locate(reads, info)
    stmt = reads.field_statement(at)
    params = bind(stmt, at.variables.coerced)
    ctx: Context = info.context
    data = await ctx.db.run(lambda conn: _run(conn, stmt, params))
    return await completed(ctx, stmt, data)


def node_reader(info: Any, entity: Entity) -> Callable[[Connection, int], tuple[Statement, Any]]:
    """A function reading row ``id`` of ``entity`` with the selection of the field ``info``
    resolves, on a given connection (a mutation's payload, in its transaction): the
    statement and its JSON (schema.execute.completed computes its pending predictions)."""
    reads = reads_of(info)
    at = locate(reads, info)

    def read(conn: Connection, id_: int) -> tuple[Statement, Any]:
        stmt = reads.field_statement(at, entity, id_)
        return stmt, _run(conn, stmt, bind(stmt, at.variables.coerced))

    return read


async def read_node(info: Any, entity: Entity, id_: int) -> Any:
    """Row ``id_`` of ``entity`` with the selection of the field ``info`` resolves, on the
    request's read transaction (under its row-level security: None when invisible)."""
    read = node_reader(info, entity)
    ctx: Context = info.context
    stmt, data = await ctx.db.run(lambda conn: read(conn, id_))
    return await completed(ctx, stmt, data)


async def completed(ctx: Context, stmt: Statement, data: Any) -> Any:
    """``data`` with pending predictions computed; a prediction that fails is left as an
    error the field's resolver raises (schema/types.py), so it is reported at its path."""
    if stmt.predictions:
        from schema.predictions import complete

        holder = {"data": data}
        await complete(ctx, stmt, holder, markers=True)
        return holder["data"]
    return data
