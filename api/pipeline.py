"""One request pipeline for every transport: what each GraphQL operation passes through
before anything runs, and how it runs.

    rate limit  ->  persisted query  ->  parse (token limit), names' lengths
    ->  graphql-core validation, against the caller's role's schema (schema.views: without
        the cube members it may not see, refused as members that do not exist)
    ->  size (depth, aliases, expanded fields)  ->  variables coerced (defaults included)
    ->  access (roles per field and input field, values, a customer names only itself,
        introspection)  ->  cost (a batch adds its operations up)  ->  execute

HTTP (api/http.py: single operations and batches, persisted or not) and both WebSocket
subprotocols (api/ws.py) call :meth:`Pipeline.prepare` and nothing else, so no transport
can skip a step. A refusal is a :class:`Refusal`: coded GraphQL errors and the HTTP status
a client should see (400, 403, 429 with Retry-After, 503 with Retry-After). Parsing and
validation are cached per query text and schema (successful or not), the measures per
operation; the checks that depend on who asks and on the variables run on every request.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cachetools import LRUCache, TTLCache
from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    get_operation_ast,
    parse,
    validate,
)
from graphql.execution.values import VariableValues, get_variable_values
from graphql.validation.rules import overlapping_fields_can_be_merged as overlapping
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from api.auth import Principal
from api.inputs import check_variable_sizes, literal_refusals, variable_refusals
from api.ratelimit import RateLimitedError, RateLimiter
from api.rules import (
    Access,
    Limits,
    Shape,
    check_arguments,
    check_cost,
    check_names,
    check_roles,
    check_size,
    cost_of,
    shape_of,
)
from db.errors import (
    BadUserInputError,
    CdmsError,
    DatabaseUnavailableError,
    QueryTooComplexError,
    busy_error,
    from_db_error,
    shown,
)
from schema.errors import api_error, bounded, retold


class PersistedQueryNotFoundError(CdmsError):
    code = "PERSISTED_QUERY_NOT_FOUND"


class PersistedQueryRequiredError(CdmsError):
    code = "PERSISTED_QUERY_REQUIRED"


STATUS = {
    "BAD_USER_INPUT": 400,
    "QUERY_TOO_COMPLEX": 400,
    "PERSISTED_QUERY_NOT_FOUND": 400,
    "PERSISTED_QUERY_REQUIRED": 400,
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "RATE_LIMITED": 429,
    "SERVICE_UNAVAILABLE": 503,
}


class Refusal(Exception):
    """An operation (or a batch) refused before it ran: errors with codes, the HTTP
    status and headers (Retry-After)."""

    def __init__(
        self, errors: list[GraphQLError], status: int, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(errors[0].message if errors else "refused")
        self.errors = errors
        self.status = status
        self.headers = dict(headers or {})

    @property
    def code(self) -> str:
        ext = self.errors[0].extensions or {}
        return str(ext.get("code", "BAD_USER_INPUT"))

    @classmethod
    def of(cls, exc: CdmsError) -> Refusal:
        message, extensions = api_error(exc)
        error = GraphQLError(message, extensions=extensions)
        headers: dict[str, str] = {}
        if isinstance(exc, RateLimitedError):
            headers["Retry-After"] = str(exc.retry_after)
        elif exc.code == "SERVICE_UNAVAILABLE":
            headers["Retry-After"] = "1"
        return cls([error], STATUS.get(exc.code, 400), headers)

    def formatted(self) -> list[Any]:
        return [e.formatted for e in self.errors]


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


@dataclass(frozen=True)
class Operation:
    """One operation as a client sent it (JSON shape already checked)."""

    query: str | None
    variables: dict[str, Any] | None = None
    operation_name: str | None = None
    extensions: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, payload: Any, raw: bytes | None = None) -> Operation:
        """BAD_USER_INPUT unless ``payload`` is ``{"query", "variables", "operationName",
        "extensions"}`` with the right types (the query may be left out for a persisted
        query). ``raw``: the JSON text it was parsed from, when at hand (a text with no
        ``\\uD800``-``\\uDFFF`` escape holds no lone surrogate, and is not searched)."""
        if not isinstance(payload, dict):
            raise BadUserInputError("each operation must be a JSON object with a query")
        query = payload.get("query")
        extensions = payload.get("extensions")
        if extensions is not None and not isinstance(extensions, dict):
            raise BadUserInputError("extensions must be a JSON object")
        # ("persistedQuery": null names no document: the operation needs its query)
        persisted = isinstance(extensions, dict) and extensions.get("persistedQuery") is not None
        if query is not None and not isinstance(query, str):
            raise BadUserInputError("query must be a string")
        if not persisted and (query is None or not query.strip()):
            raise BadUserInputError("no GraphQL query found in the request")
        variables = payload.get("variables")
        if variables is not None and not isinstance(variables, dict):
            raise BadUserInputError("variables must be a JSON object")
        name = payload.get("operationName")
        if name is not None and not isinstance(name, str):
            raise BadUserInputError("operationName must be a string")
        try:  # JSON may escape half a UTF-16 pair ("\ud800"): valid JSON, not Unicode text
            if raw is None or _SURROGATE_ESCAPE.search(raw):
                json.dumps(payload, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise BadUserInputError(
                "the operation holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is"
                " not Unicode text"
            ) from None
        return cls(query, variables, name, extensions)


@dataclass(frozen=True)
class Prepared:
    """An operation that passed every check, ready to run."""

    query: str
    operation_name: str | None
    variables: dict[str, Any]
    document: DocumentNode
    operation: OperationDefinitionNode
    coerced: VariableValues
    shape: Shape
    cost: int

    @property
    def kind(self) -> OperationType:
        return self.operation.operation


@dataclass
class _Parsed:
    document: DocumentNode | None
    errors: list[GraphQLError]
    chars: int = 0  # the text's length: its weight in the cache (its tree is ~70 B a char)
    shapes: dict[str | None, Shape | CdmsError] = field(default_factory=dict)
    allowed: set[tuple[str | None, str]] = field(default_factory=set)  # (operation, role)


@dataclass(frozen=True)
class Policy:
    """The deployment's rules (api/security.py reads them from the environment)."""

    production: bool = False
    persisted_only: bool = False
    limits: Limits = field(default_factory=Limits)
    # how long a persisted query removed from the allow-list may still be served by a
    # process that read it (CDMS_APIKEY_CACHE_SECONDS, the bound on every revocation)
    recheck_s: float = 5.0


_JSON_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"|[^\[\]{}"]+')  # strings, then the rest


def json_depth_ok(body: str | bytes, limit: int) -> bool:
    """Whether the JSON text nests at most ``limit`` levels (checked before parsing it:
    the parser recurses, and an over-deep body must be a 400, not a crash)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if text.count("[") + text.count("{") <= limit:
        return True  # (brackets inside strings counted too: an upper bound of the depth)
    brackets = _JSON_BRACKETS.sub("", text)
    if len(brackets) <= 2 * limit:
        return True
    depth = 0
    for ch in brackets:
        if ch == '"':
            return True  # an unterminated string: not JSON, which the parser reports
        if ch in "[{":
            depth += 1
            if depth > limit:
                return False
        else:
            depth -= 1
    return True


def parse_body(body: bytes, limits: Limits) -> Any:
    """The JSON of a request body, or BAD_USER_INPUT (malformed, over-deep, not UTF-8).

    The body is decoded as strict UTF-8 first (GraphQL over HTTP's encoding): ``json.loads``
    of bytes would also take UTF-16 and UTF-32 and let the encoded half of a UTF-16 pair
    through, where :meth:`Operation.from_json` looks for it only as a ``\\u`` escape."""
    if not json_depth_ok(body, limits.max_json_depth):
        raise BadUserInputError(
            f"the request's JSON is nested too deep (more than {limits.max_json_depth} levels)",
            reason="too_deep",
        )
    try:
        text = body.decode("utf-8-sig")  # (a byte order mark is not an error)
    except UnicodeDecodeError:
        raise BadUserInputError("request body is not UTF-8 text", reason="not_utf8") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise BadUserInputError("request body is not valid JSON") from None


_CACHE_MAX_CHARS = 50_000
# the characters of the documents the parse cache keeps (~35 MB of trees)
PARSED_CHARS = 500_000
# a new document's parse and validation, in rate tokens: one more per this many characters
PARSE_CHARS_PER_TOKEN = 2_000
_INLINE_BYTES = 16_384


class Pipeline:
    """The checks and the caches of one API process, for one schema and one policy."""

    def __init__(
        self,
        gschema: GraphQLSchema,
        engine: Engine,
        policy: Policy,
        rate: RateLimiter | None = None,
        access: Access | None = None,
        views: Callable[[str | None], GraphQLSchema] | None = None,
    ) -> None:
        self.gschema = gschema  # schema.app.graphql_schema(): graphql-core's view of it
        if views is None:
            from schema.app import role_schema

            views = role_schema
        # the schema each role validates against: gschema less what the role may not see
        assert views(None) is gschema, "views must be of the pipeline's schema"
        self.views: Callable[[str | None], GraphQLSchema] = views
        # graphql-core's OverlappingFieldsCanBeMerged compares the fields that share a
        # response key pairwise, up to a budget (its documented module setting, read when a
        # validation starts): 500,000 units by default, seconds of CPU for a 4.5 KB document.
        # A few units per token leaves real documents far below it (they spend ~0).
        overlapping.MAX_COMPLEXITY_BUDGET = 4 * policy.limits.max_tokens
        self.engine = engine
        self.policy = policy
        self.rate = rate
        if access is None:
            from api.access import access_of
            from schema.app import schema

            access = access_of(schema)
        self.access = access
        # weighed by the documents' lengths: a 5,000-token text (~28 KB) parses into ~1.9 MB
        # of tree, and 512 of them, counted by entries, kept ~1 GB
        self._parsed: LRUCache[tuple[str, bool, GraphQLSchema], _Parsed] = LRUCache(
            maxsize=PARSED_CHARS, getsizeof=lambda p: max(1, p.chars)
        )
        self._persisted: TTLCache[str, str] = TTLCache(maxsize=1024, ttl=policy.recheck_s)
        self._lock = threading.Lock()

    @property
    def limits(self) -> Limits:
        return self.policy.limits

    # --- rate ------------------------------------------------------------------------
    async def admit(self, bucket: str, n: int = 1, *, retaken: int = 0) -> None:
        """RATE_LIMITED (429) when the bucket is empty; nothing without a rate limit.
        ``retaken``: tokens the request took already (RateLimiter.admit)."""
        if self.rate is None:
            return
        try:
            await run_in_threadpool(self.rate.admit, bucket, n, retaken=retaken)
        except CdmsError as exc:
            raise Refusal.of(exc) from None

    # --- persisted queries -------------------------------------------------------------
    def _lookup(self, sha: str) -> str | None:
        import sqlalchemy as sa

        try:
            with self.engine.begin() as conn:  # (COMMIT: see db.replicas.commit_lsn)
                found = conn.execute(
                    sa.text("SELECT query FROM app.persisted_queries WHERE sha256 = :h"),
                    {"h": sha},
                ).scalar()
        except sa.exc.DBAPIError as exc:
            raise from_db_error(exc) or DatabaseUnavailableError() from exc
        except sa.exc.TimeoutError:  # no pooled connection free in time
            raise busy_error() from None
        return None if found is None else str(found)

    async def resolve(self, op: Operation, principal: Principal) -> str:
        """The query text to run: the sent one, or the registered one its hash names."""
        ext = op.extensions or {}
        persisted = ext.get("persistedQuery")
        if persisted is None:
            if self.policy.persisted_only and not principal.is_admin:
                raise PersistedQueryRequiredError(
                    "only persisted queries are accepted: send extensions.persistedQuery"
                    ".sha256Hash of a registered query"
                )
            assert op.query is not None
            return op.query
        sha = persisted.get("sha256Hash") if isinstance(persisted, dict) else None
        if not isinstance(sha, str) or re.fullmatch(r"[0-9a-fA-F]{64}", sha) is None:
            raise PersistedQueryNotFoundError("persistedQuery.sha256Hash must be 64 hex digits")
        sha = sha.lower()
        query = self._persisted.get(sha)
        if query is None:
            query = await run_in_threadpool(self._lookup, sha)
            if query is None:
                raise PersistedQueryNotFoundError(f"persisted query {sha} is not registered")
            self._persisted[sha] = query
        sent = op.query
        if sent and sent.strip() and hashlib.sha256(sent.encode("utf-8")).hexdigest() != sha:
            raise PersistedQueryNotFoundError("the query does not match its sha256Hash")
        return query

    # --- parse and validate -------------------------------------------------------------
    def _parse(self, query: str, hide: bool, view: GraphQLSchema) -> _Parsed:
        key = (query, hide, view)
        with self._lock:
            found = self._parsed.get(key)
        if found is not None:
            return found
        try:
            document = parse(query, max_tokens=self.limits.max_tokens)
            check_names(document, self.limits)
        except GraphQLError as error:
            parsed = _Parsed(None, [_coded(error)], chars=len(query))
        except QueryTooComplexError as exc:  # a name past its length
            parsed = _Parsed(None, Refusal.of(exc).errors, chars=len(query))
        else:
            errors = validate(view, document, max_errors=20, hide_suggestions=hide)
            refusals = [_coded(e) for e in literal_refusals(errors, document)]
            parsed = _Parsed(document, refusals, chars=len(query))
        if len(query) <= _CACHE_MAX_CHARS:
            with self._lock:
                self._parsed[key] = parsed
        return parsed

    def _shape(self, parsed: _Parsed, op: OperationDefinitionNode, view: GraphQLSchema) -> Shape:
        name = op.name.value if op.name else None
        found = parsed.shapes.get(name)
        if found is None:
            assert parsed.document is not None
            try:
                found = shape_of(view, parsed.document, op, self.limits)
                check_size(found, self.limits)
            except CdmsError as exc:
                found = exc
            parsed.shapes[name] = found
        if isinstance(found, CdmsError):
            raise found
        return found

    def _operation(self, document: DocumentNode, name: str | None) -> OperationDefinitionNode:
        found = get_operation_ast(document, name)
        if found is not None:
            return found
        if not any(isinstance(d, OperationDefinitionNode) for d in document.definitions):
            raise BadUserInputError("the document has no operation, only fragments")
        if name is None:
            raise BadUserInputError(
                "the document has several operations: name one with operationName"
            )
        raise BadUserInputError(
            f"operationName {shown(name)} does not name an operation of the document"
        )

    def check(
        self,
        query: str,
        op: Operation,
        principal: Principal,
        kinds: Sequence[OperationType],
    ) -> Prepared:
        """Parse, validate and check one operation for ``principal`` (blocking, CPU only:
        linear in the document, bounded by the token limit). Raises Refusal.

        Roles are decided before the validation errors are reported, so a role that may
        not use a field learns nothing more about it than FORBIDDEN."""
        view = self.views(principal.role)
        parsed = self._parse(query, self._hide(principal), view)
        if parsed.document is None:  # a syntax error, over the token limit, a long name
            raise Refusal(parsed.errors, 400)
        try:
            operation = self._operation(parsed.document, op.operation_name)
            if operation.operation not in kinds:
                raise BadUserInputError(
                    "subscriptions are served over WebSocket (graphql-transport-ws or"
                    " graphql-ws) on /graphql"
                    if operation.operation is OperationType.SUBSCRIPTION
                    else f"{operation.operation.value} operations are not accepted here"
                )
            shape = self._shape(parsed, operation, view)
            passed = (operation.name.value if operation.name else None, principal.role)
            if passed not in parsed.allowed:  # roles depend on the operation, not the request
                check_roles(shape, self.access, principal.role, production=self.policy.production)
                parsed.allowed.add(passed)
            if parsed.errors:
                raise Refusal(parsed.errors, 400)
            check_variable_sizes(op.variables or {})
            coerced = get_variable_values(
                view,
                operation.variable_definitions or (),
                op.variables or {},
                max_errors=20,
                hide_suggestions=self._hide(principal),
            )
            if isinstance(coerced, list):
                told = variable_refusals(
                    coerced, view, parsed.document, operation, op.variables or {}
                )
                raise Refusal([_coded(e) for e in told], 400)
            check_arguments(shape, self.access, principal.role, principal.customer_id, coerced)
            cost = cost_of(shape, coerced, self.limits)
            check_cost(cost, self.limits, shape.counted)
        except GraphQLError as error:  # an argument that does not coerce
            raise Refusal([_coded(error)], 400) from None
        except CdmsError as exc:
            raise Refusal.of(exc) from None
        return Prepared(
            query, op.operation_name, op.variables or {}, parsed.document, operation,
            coerced, shape, cost,
        )  # fmt: skip

    async def prepare(
        self,
        ops: Sequence[Operation],
        principal: Principal,
        kinds: Sequence[OperationType] = (OperationType.QUERY, OperationType.MUTATION),
        size: int = _INLINE_BYTES + 1,
    ) -> list[Prepared]:
        """Every check for one request (a batch of ``ops``, all or nothing): the rate
        limit takes one token per operation and one per mutation field past an operation's
        first, the cost limit holds for the sum. ``size``:
        the request's bytes (small requests of known documents are checked in place)."""
        try:
            if len(ops) > self.limits.max_batch:
                raise QueryTooComplexError(
                    f"batch of {len(ops)} operations exceeds {self.limits.max_batch}",
                    limit=self.limits.max_batch,
                )
            await self.admit(principal.bucket, len(ops))  # (raises a Refusal itself)
            queries = [await self.resolve(op, principal) for op in ops]
        except CdmsError as exc:
            raise Refusal.of(exc) from None
        # a document not parsed yet takes a token more per PARSE_CHARS_PER_TOKEN characters:
        # validating 5,000 tokens (~28 KB) is ~0.2 s of CPU, and distinct documents were
        # bounded by the request rate alone (a cached one costs nothing more). At most what
        # the bucket can hold besides the operations' tokens, taken just before: more never
        # fits, so the document was refused for ever (the review of 2026-12-07; a burst of
        # distinct long documents still empties the bucket). A refusal tells the wait until
        # the bucket holds what the retry takes, the operations' tokens again too.
        new = self._new_chars(queries, principal)
        parse = self._parse_tokens(new, len(ops))
        if parse:
            await self.admit(principal.bucket, parse, retaken=len(ops))
        if size <= _INLINE_BYTES and new == 0:
            # a known document and a small request: the checks left are linear in what
            # was sent and take microseconds, less than a hop to a worker thread
            prepared = self._check_all(queries, ops, principal, kinds)
        else:  # parsing and validating a new document is CPU-bound (bounded by tokens)
            prepared = await run_in_threadpool(self._check_all, queries, ops, principal, kinds)
        if principal.role == "customer" and any(len(_writes(p)) > 1 for p in prepared):
            # an operation's mutation fields share one transaction, holding what each locks
            # (products' stock rows) until the last: a customer ordering [21] then [20] in
            # one operation deadlocked other customers' orders of [20, 21], and ending with
            # a field refused on purpose rolled it all back, free of its daily limits (the
            # hostile review of 2026-12-07). The shop's keys may write several at once.
            raise Refusal.of(
                QueryTooComplexError(
                    "an operation of a customer makes one change: send each mutation as an"
                    " operation of its own (a batch may hold several)",
                    limit=1,
                    reason="one mutation field per operation",
                )
            ) from None
        # each mutation field past an operation's first takes a token more: aliases would
        # otherwise place 30 orders for one; so does each cube field past the first (each
        # is a warehouse query of its own)
        writes = sum(max(0, len(_writes(p)) - 1) + max(0, p.shape.cubes - 1) for p in prepared)
        if writes:
            await self.admit(principal.bucket, writes)
        return prepared

    def _parse_tokens(self, new_chars: int, operations: int) -> int:
        """The rate tokens parsing ``new_chars`` new characters takes, after the request's
        ``operations`` tokens: at most the burst less those (no rate limit: none)."""
        if self.rate is None:
            return 0
        return min(new_chars // PARSE_CHARS_PER_TOKEN, max(0, self.rate.burst - operations))

    def _new_chars(self, queries: list[str], principal: Principal) -> int:
        """The characters of the documents of ``queries`` not in the parse cache."""
        key = (self._hide(principal), self.views(principal.role))
        with self._lock:
            return sum(len(q) or 1 for q in dict.fromkeys(queries) if (q, *key) not in self._parsed)

    def _hide(self, principal: Principal) -> bool:
        return self.policy.production and not principal.is_admin

    def _check_all(
        self,
        queries: list[str],
        ops: Sequence[Operation],
        principal: Principal,
        kinds: Sequence[OperationType],
    ) -> list[Prepared]:
        prepared = [self.check(q, op, principal, kinds) for q, op in zip(queries, ops, strict=True)]
        try:
            counted = frozenset().union(*(p.shape.counted for p in prepared))
            check_cost(sum(p.cost for p in prepared), self.limits, counted)
        except CdmsError as exc:
            raise Refusal.of(exc) from None
        return prepared


def _writes(p: Prepared) -> list[str]:
    return [f for t, f in p.shape.roots if t == "Mutation" and not f.startswith("__")]


def _coded(error: GraphQLError) -> GraphQLError:
    """A parse/validation error with its code: QUERY_TOO_COMPLEX for the token limit and
    an exhausted validation budget, BAD_USER_INPUT otherwise; what it quotes of the
    request is bounded (schema.errors.bounded)."""
    aborted = "tokens. Parsing aborted" in error.message or error.message == "Validation aborted."
    code = "QUERY_TOO_COMPLEX" if aborted else "BAD_USER_INPUT"
    told = "code" in (error.extensions or {})  # a scalar's refusal in its words: api.inputs
    return retold(error, bounded(error.message, quoted=not told), {"code": code})
