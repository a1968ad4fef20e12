"""Operation checks that run before the schema executes anything, for every principal:

- which root fields a role may use (analysts never mutate; customers only read their own
  kind of data and may place orders, request returns, give feedback and open tickets);
- which fields need a role at any depth (cube queries and models: analysts; predictions:
  analysts and integrators);
- a customer may name no other customer (any ``customerId`` argument or input field);
- in production, introspection is for admins only;
- the persisted-query allow-list (``extensions.persistedQuery.sha256Hash``);
- the query cost: the number of objects the requested page sizes can return, multiplied
  down the nesting (``QUERY_TOO_COMPLEX`` states the cost and the limit). Depth, alias and
  token limits stay in ``schema.app`` (this adds cost, it does not repeat them).

Row-level security in PostgreSQL is the floor under all of this: a check missed here
still cannot return another customer's rows.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    parse,
)
from graphql.utilities import value_from_ast_untyped
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from api.auth import Principal
from db.errors import CdmsError, ForbiddenError


class QueryTooComplexError(CdmsError):
    code = "QUERY_TOO_COMPLEX"


class PersistedQueryNotFoundError(CdmsError):
    code = "PERSISTED_QUERY_NOT_FOUND"


class PersistedQueryRequiredError(CdmsError):
    code = "PERSISTED_QUERY_REQUIRED"


# Who may call which mutation (a mutation missing here is for admins only).
MUTATION_ROLES: dict[str, frozenset[str]] = {
    "placeOrder": frozenset({"admin", "service", "customer"}),
    "setOrderStatus": frozenset({"admin", "service"}),
    "requestReturn": frozenset({"admin", "service", "customer"}),
    "approveReturn": frozenset({"admin", "service"}),
    "rejectReturn": frozenset({"admin", "service"}),
    "openSupportTicket": frozenset({"admin", "service", "customer"}),
    "updateSupportTicket": frozenset({"admin", "service"}),
    "submitFeedback": frozenset({"admin", "customer"}),
    "createCustomer": frozenset({"admin"}),
    "updateCustomer": frozenset({"admin"}),
    "createProduct": frozenset({"admin"}),
    "updateProduct": frozenset({"admin"}),
}
# The query roots a customer may use (no cube queries, no models, no predictions).
CUSTOMER_QUERIES = frozenset(
    {
        "customer",
        "customers",
        "order",
        "orders",
        "product",
        "products",
        "supportTicket",
        "supportTickets",
        "returns",
        "feedback",
        "__typename",
        "__schema",  # introspection: production mode restricts it separately
        "__type",
    }
)
CUSTOMER_SUBSCRIPTIONS = frozenset({"orderStatusChanged"})
# Fields (at any depth, by name) only some roles may ask for: cube queries and the model
# registry for analysts, predictions for analysts and integrators.
_ANALYSTS = frozenset({"admin", "analyst"})
_PREDICTORS = frozenset({"admin", "analyst", "service"})
FIELD_ROLES: dict[str, frozenset[str]] = {
    "cube": _ANALYSTS,
    "cubeMeta": _ANALYSTS,
    "models": _ANALYSTS,
    "predictOrderStatus": _PREDICTORS,
    "predictSupportStatus": _PREDICTORS,
    "predictOrderValue": _PREDICTORS,
    "predictedStatus": _PREDICTORS,
    "predictedTotal": _PREDICTORS,
    "expectedOrderValue": _PREDICTORS,
}

_CONNECTION_MARKERS = frozenset({"edges", "nodes", "pageInfo", "totalCount"})


class Document:
    """One parsed operation with its fragments and variables."""

    def __init__(self, query: str, variables: dict[str, Any] | None, name: str | None) -> None:
        doc = self.parse(query)
        ops = [d for d in doc.definitions if isinstance(d, OperationDefinitionNode)]
        self.fragments = {
            d.name.value: d for d in doc.definitions if isinstance(d, FragmentDefinitionNode)
        }
        chosen = [o for o in ops if name is None or (o.name and o.name.value == name)]
        if len(chosen) != 1:
            raise GraphQLError("operation not found")  # the schema reports it properly
        self.operation = chosen[0]
        self.variables = variables or {}

    @staticmethod
    def parse(query: str) -> DocumentNode:
        """The guard's parse, with its own token limit (a subclass may cache it)."""
        return parse(query, max_tokens=20_000)

    def fields(self, selection: SelectionSetNode | None) -> Iterator[FieldNode]:
        """The fields of a selection set, fragments expanded (cycles are the schema's error)."""
        if selection is None:
            return
        for sel in selection.selections:
            if isinstance(sel, FieldNode):
                yield sel
            elif isinstance(sel, InlineFragmentNode):
                yield from self.fields(sel.selection_set)
            elif isinstance(sel, FragmentSpreadNode):
                frag = self.fragments.get(sel.name.value)
                if frag is not None:
                    yield from self.fields(frag.selection_set)

    def value(self, node: ValueNode) -> Any:
        return value_from_ast_untyped(node, self.variables)

    def walk(self, selection: SelectionSetNode | None, depth: int = 0) -> Iterator[FieldNode]:
        if depth > 64:
            return
        for f in self.fields(selection):
            yield f
            yield from self.walk(f.selection_set, depth + 1)


def _customer_ids(doc: Document, node: ValueNode, key: str | None) -> Iterator[Any]:
    if isinstance(node, VariableNode):
        yield from _ids_in(doc.variables.get(node.name.value), key)
    elif isinstance(node, ObjectValueNode):
        for f in node.fields:
            yield from _customer_ids(doc, f.value, f.name.value)
    elif isinstance(node, ListValueNode):
        for v in node.values:
            yield from _customer_ids(doc, v, key)
    elif key == "customerId":
        yield doc.value(node)


def _ids_in(value: Any, key: str | None) -> Iterator[Any]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _ids_in(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _ids_in(v, key)
    elif key == "customerId":
        yield value


def query_cost(doc: Document, default_page: int, max_page: int) -> int:
    """Objects the operation may return: each page size times the pages above it."""

    def cost(selection: SelectionSetNode | None, mult: int, depth: int) -> int:
        total = 0
        if depth > 64:
            return total
        for f in doc.fields(selection):
            if f.selection_set is None:
                continue
            page = None
            for arg in f.arguments or ():
                if arg.name.value in {"first", "last"}:
                    v = doc.value(arg.value)
                    if isinstance(v, int) and not isinstance(v, bool):
                        page = max(0, min(v, max_page))
            if page is None and any(
                c.name.value in _CONNECTION_MARKERS for c in doc.fields(f.selection_set)
            ):
                page = default_page
            if page is None:  # an object or a list of a fixed size: no page of its own
                total += cost(f.selection_set, mult, depth + 1)
            else:
                total += mult * page + cost(f.selection_set, mult * page, depth + 1)
        return total

    return cost(doc.operation.selection_set, 1, 0)


@dataclass(frozen=True)
class _Facts:
    names: tuple[str, ...]  # every field name of the operation, fragments expanded, in order
    roots: tuple[str, ...]
    cost: int | None  # None when a page size comes from a variable


def _has_variable(node: ValueNode) -> bool:
    if isinstance(node, VariableNode):
        return True
    if isinstance(node, ListValueNode):
        return any(_has_variable(v) for v in node.values)
    if isinstance(node, ObjectValueNode):
        return any(_has_variable(f.value) for f in node.fields)
    return False


class OperationGuard:
    def __init__(
        self,
        engine: Engine,
        *,
        production: bool,
        persisted_only: bool,
        max_cost: int,
        default_page: int = 50,
        max_page: int = 500,
    ) -> None:
        self.engine = engine
        self.production = production
        self.persisted_only = persisted_only
        self.max_cost = max_cost
        self.default_page = default_page
        self.max_page = max_page
        self._persisted: dict[str, str] = {}
        self._facts_cache: dict[int, tuple[OperationDefinitionNode, _Facts]] = {}
        self._facts_lock = threading.Lock()

    # ---- persisted queries ---------------------------------------------------------
    def _lookup(self, sha: str) -> str | None:
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.text("SELECT query FROM app.persisted_queries WHERE sha256 = :h"), {"h": sha}
            ).scalar()
        return None if found is None else str(found)

    async def resolve(self, op: dict[str, Any], principal: Principal) -> dict[str, Any]:
        """``op`` with its query filled in from the allow-list (when it names a hash)."""
        ext = op.get("extensions")
        persisted = ext.get("persistedQuery") if isinstance(ext, dict) else None
        sha = persisted.get("sha256Hash") if isinstance(persisted, dict) else None
        if sha is None:
            if self.persisted_only and not principal.is_admin:
                raise PersistedQueryRequiredError(
                    "only persisted queries are accepted: send extensions.persistedQuery"
                    ".sha256Hash of a registered query"
                )
            return op
        if not isinstance(sha, str) or len(sha) != 64:
            raise PersistedQueryNotFoundError("persistedQuery.sha256Hash must be 64 hex digits")
        sha = sha.lower()
        query = self._persisted.get(sha)
        if query is None:
            query = await run_in_threadpool(self._lookup, sha)
            if query is None:
                raise PersistedQueryNotFoundError(f"persisted query {sha} is not registered")
            self._persisted[sha] = query
        sent = op.get("query")
        if (
            isinstance(sent, str)
            and sent.strip()
            and hashlib.sha256(sent.encode("utf-8")).hexdigest() != sha
        ):
            raise PersistedQueryNotFoundError("the query does not match its sha256Hash")
        return {**op, "query": query}

    # ---- checks --------------------------------------------------------------------
    def check(self, op: dict[str, Any], principal: Principal) -> None:
        """Raise FORBIDDEN / QUERY_TOO_COMPLEX; unparsable operations are left to the schema."""
        variables = op.get("variables")
        try:
            doc = Document(
                op["query"],
                variables if isinstance(variables, dict) else None,
                op.get("operationName"),
            )
        except GraphQLError:
            return
        self.check_document(doc, principal)

    def _facts(self, doc: Document) -> _Facts:
        """What the checks need of the operation itself, kept per parsed operation (a
        cached parse hands the same AST back for the same query text)."""
        key = id(doc.operation)
        with self._facts_lock:
            found = self._facts_cache.get(key)
            if found is not None and found[0] is doc.operation:
                return found[1]
        names = tuple(dict.fromkeys(f.name.value for f in doc.walk(doc.operation.selection_set)))
        roots = tuple(f.name.value for f in doc.fields(doc.operation.selection_set))
        paged_by_variables = any(
            _has_variable(arg.value)
            for f in doc.walk(doc.operation.selection_set)
            for arg in f.arguments or ()
            if arg.name.value in {"first", "last"}
        )
        cost = None if paged_by_variables else query_cost(doc, self.default_page, self.max_page)
        facts = _Facts(names, roots, cost)
        with self._facts_lock:
            self._facts_cache[key] = (doc.operation, facts)
            while len(self._facts_cache) > 512:
                self._facts_cache.pop(next(iter(self._facts_cache)))
        return facts

    def check_document(self, doc: Document, principal: Principal) -> None:
        role = principal.role
        kind = doc.operation.operation
        facts = self._facts(doc)
        if self.production and not principal.is_admin:
            for name in facts.names:
                if name.startswith("__") and name != "__typename":
                    raise ForbiddenError(
                        "introspection is for admins in production", reason="introspection"
                    )
        for name in facts.names:
            allowed_roles = FIELD_ROLES.get(name)
            if allowed_roles is not None and role not in allowed_roles:
                raise ForbiddenError(
                    f"role {role} may not query {name}",
                    reason="role",
                    role=role,
                    field=name,
                )
        for name in facts.roots:
            if kind is OperationType.MUTATION:
                if name != "__typename" and role not in MUTATION_ROLES.get(name, {"admin"}):
                    raise ForbiddenError(
                        f"role {role} may not call {name}", reason="role", role=role, field=name
                    )
            elif role == "customer":
                allowed = (
                    CUSTOMER_SUBSCRIPTIONS
                    if kind is OperationType.SUBSCRIPTION
                    else CUSTOMER_QUERIES
                )
                if name not in allowed:
                    raise ForbiddenError(
                        f"role customer may not query {name}", reason="role", role=role, field=name
                    )
        if role == "customer":
            for f in doc.walk(doc.operation.selection_set):
                for arg in f.arguments or ():
                    key = arg.name.value
                    if f.name.value == "customer" and key == "id":
                        key = "customerId"  # customer(id: ...) names a customer too
                    for cid in _customer_ids(doc, arg.value, key):
                        if str(cid) != str(principal.customer_id):
                            raise ForbiddenError(
                                "a customer may only name itself", reason="other_customer"
                            )
        cost = facts.cost
        if cost is None:  # page sizes from variables: this request's values decide
            cost = query_cost(doc, self.default_page, self.max_page)
        if cost > self.max_cost:
            raise QueryTooComplexError(
                f"query cost {cost} exceeds the limit of {self.max_cost} "
                "(cost: requested page sizes multiplied down the nesting)",
                cost=cost,
                limit=self.max_cost,
            )
