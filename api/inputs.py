"""A value a scalar refused, told with the input field it was given for.

A scalar's parser (schema/scalars.py: a ``Decimal`` with a third decimal, a date that is
none) raises a :class:`~db.errors.CdmsError` with its message and fields (``reason``,
``value``). graphql-core reports it in its own words, "Expected value of type 'Decimal',
but encountered error '...'; found: ..." or "Variable '$input' has invalid value at
.unitPrice: ...", and keeps no structured location. A client is told the scalar's words and
fields instead, with the input field they are about, as a constraint's refusal names it:
``field`` (the innermost input field's or argument's name) and, inside a list, ``index``
(the item's position from 1, as the procedures number a basket's items):

    {"message": "invalid unitPrice: an amount of money has at most 2 decimals, got '99.999'",
     "extensions": {"code": "BAD_USER_INPUT", "field": "unitPrice",
                    "reason": "too many decimals", "value": "99.999"}}

The location comes from graphql-core's own validation: for a literal, the value node an
error names, found in the document; for a variable, ``validate_input_value`` run again on
that variable's value (it reports each refusal with its path), below the place the
operation uses the variable. Only refused requests pay for it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from graphql import (
    ArgumentNode,
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    ListValueNode,
    Node,
    ObjectValueNode,
    OperationDefinitionNode,
    ValueNode,
    VariableDefinitionNode,
    VariableNode,
    Visitor,
    type_from_ast,
    visit,
)
from graphql.language.visitor import SKIP, VisitorAction
from graphql.utilities import validate_input_value

from db.errors import CdmsError, QueryTooComplexError, clipped
from schema.errors import api_terms, original_error, retold
from schema.sql import MAX_PARAMS

Path = list[str | int]


# objects' keys and list items in all the variables of an operation: a filter holds at most 500
# objects (schema.sql.MAX_FILTER_NODES) and 5,000 values, a cube's the same
MAX_VARIABLE_NODES = 10_000


def check_variable_sizes(variables: Mapping[str, Any], limit: int = MAX_PARAMS) -> None:
    """QUERY_TOO_COMPLEX, before graphql-core coerces the variables, for a list in them
    longer than ``limit`` (more values than one statement binds, and than a cube filter
    holds: coercing 300,000 ids took ~0.85 s of CPU for a request refused afterwards), and
    for more than MAX_VARIABLE_NODES objects' keys and list items in all of them (45 lists of
    4,999 empty filters were walked whole, 25 s of CPU for a cube, before their size was
    refused). Stops counting at the first bound passed."""
    stack: list[tuple[str, Any]] = [(f"${k}", v) for k, v in variables.items()]
    nodes = 0
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            nodes += max(1, len(value))  # its keys: 10,000 unknown ones are 20 errors
            stack.extend((f"{path}.{k}", v) for k, v in value.items())
        elif isinstance(value, list):
            if len(value) > limit:
                raise QueryTooComplexError(
                    f"variable {clipped(path)} holds a list of {len(value):,} items, more than"
                    f" {limit:,} (the values one statement binds, or a filter holds): send fewer",
                    limit=limit,
                )
            nodes += len(value)
            stack.extend(
                (f"{path}[{i}]", v) for i, v in enumerate(value) if isinstance(v, dict | list)
            )
        if nodes > MAX_VARIABLE_NODES:
            raise QueryTooComplexError(
                f"the variables hold more than {MAX_VARIABLE_NODES:,} objects, keys and list items"
                " (a filter holds at most 500 objects and 5,000 values): send fewer",
                limit=MAX_VARIABLE_NODES,
            )


def refusal_of(error: GraphQLError) -> CdmsError | None:
    """The error a scalar's parser raised behind a graphql-core error, if one did."""
    orig = original_error(error)
    return orig if isinstance(orig, CdmsError) else None


def literal_refusals(errors: list[GraphQLError], document: DocumentNode) -> list[GraphQLError]:
    """Validation ``errors`` with each scalar's refusal of a literal told at its field."""
    out = []
    for error in errors:
        refusal = refusal_of(error)
        target = error.nodes[0] if error.nodes else None
        path = None
        if refusal is not None and target is not None:
            path = next((p for p, node in _values(document) if node is target), None)
        out.append(error if refusal is None or path is None else _told(error, refusal, path))
    return out


def variable_refusals(
    errors: list[GraphQLError],
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: Mapping[str, Any],
) -> list[GraphQLError]:
    """Variable coercion ``errors`` with each scalar's refusal told at its field."""
    out = []
    seen: dict[str, int] = {}  # refusals told so far, per variable (reported in order)
    for error in errors:
        refusal = refusal_of(error)
        definition = error.nodes[0] if error.nodes else None
        if refusal is None or not isinstance(definition, VariableDefinitionNode):
            out.append(error)
            continue
        name = definition.variable.name.value
        k = seen[name] = seen.get(name, -1) + 1
        inner = _refused_paths(schema, definition, variables.get(name))
        if k >= len(inner) or inner[k][1].message != refusal.message:
            out.append(error)  # not the same refusal: say nothing wrong
            continue
        base = _usage(operation, name) or _usage(document, name) or [name]
        out.append(_told(error, refusal, [*base, *inner[k][0]]))
    return out


def _refused_paths(
    schema: GraphQLSchema, definition: VariableDefinitionNode, value: Any
) -> list[tuple[Path, CdmsError]]:
    gtype = type_from_ast(schema, definition.type)
    found: list[tuple[Path, CdmsError]] = []

    def on_error(error: GraphQLError, path: Path) -> None:
        refusal = refusal_of(error)
        if refusal is not None:
            found.append((list(path), refusal))

    if gtype is not None:
        validate_input_value(value, gtype, on_error)  # type: ignore[arg-type]
    return found


def _usage(root: Node, variable: str) -> Path | None:
    """The path of the first place ``root`` uses ``$variable``."""
    for path, node in _values(root):
        if isinstance(node, VariableNode) and node.name.value == variable:
            return path
    return None


class _Owners(Visitor):
    """Each argument's value and each variable's default, with its name."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, ValueNode]] = []

    def enter_argument(self, node: ArgumentNode, *_: Any) -> VisitorAction:
        self.found.append((node.name.value, node.value))
        return SKIP

    def enter_variable_definition(self, node: VariableDefinitionNode, *_: Any) -> VisitorAction:
        if node.default_value is not None:
            self.found.append((node.variable.name.value, node.default_value))
        return SKIP


def _values(root: Node) -> Iterator[tuple[Path, ValueNode]]:
    """Every value under ``root`` with its path from its argument (or variable) through
    input fields and list positions, in document order (no recursion: a literal may nest
    as deep as the token limit allows)."""
    owners = _Owners()
    visit(root, owners)
    for name, value in owners.found:
        stack: list[tuple[Path, ValueNode]] = [([name], value)]
        while stack:
            path, node = stack.pop()
            yield path, node
            if isinstance(node, ObjectValueNode):
                stack.extend(([*path, f.name.value], f.value) for f in reversed(node.fields))
            elif isinstance(node, ListValueNode):
                stack.extend(([*path, i], v) for i, v in reversed(list(enumerate(node.values))))


def _told(error: GraphQLError, refusal: CdmsError, path: Path) -> GraphQLError:
    field = next((p for p in reversed(path) if isinstance(p, str)), None)
    index = next((p + 1 for p in reversed(path) if isinstance(p, int)), None)
    where = "" if index is None else f"item {index}: "
    located: dict[str, Any] = (
        {"field": field} if index is None else {"field": field, "index": index}
    )
    fields = {**located, **{k: v for k, v in refusal.fields.items() if k not in located}}
    message, extensions = api_terms(
        refusal.code, f"{where}invalid {field}: {refusal.message}", fields
    )
    return retold(error, message, extensions)
