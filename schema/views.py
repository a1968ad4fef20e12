"""The schema a role validates against: the whole schema less the cube members the role
may not see (``public: false``, docs/semantic.md "Perspectives").

graphql-core then refuses a hidden member itself, during validation or while it coerces
the variables, exactly as it refuses a member that does not exist: the same message,
location, status and phase, on every transport (api/pipeline.py validates with the
caller's view). A member is hidden by removing its field from its cube's row type
(``CubeProducts``) and its input field from the cube's ``where`` and ``orderBy`` inputs
(``CubeProductsWhere``, ``CubeProductsOrderBy``); a type left with no field goes with
every field and argument of that type (a cube whose members are all hidden), and a type
no longer reachable goes too (a hidden time dimension's ``CubeSalesOrderedAt``), so that
no name of a hidden member is left to find, not even as a type.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from graphql import (
    DefinitionNode,
    DocumentNode,
    FieldDefinitionNode,
    InputObjectTypeDefinitionNode,
    InputValueDefinitionNode,
    InterfaceTypeDefinitionNode,
    NamedTypeNode,
    Node,
    ObjectTypeDefinitionNode,
    SchemaDefinitionNode,
    TypeDefinitionNode,
    TypeNode,
    UnionTypeDefinitionNode,
    Visitor,
    visit,
)

from schema.cube.inputs import order_name, where_name
from schema.cube.types import type_name
from semantic.model import Model

Hidden = frozenset[tuple[str, str]]  # (GraphQL type, field)


def hidden_fields(model: Model, role: str | None) -> Hidden:
    """The fields and input fields of the members ``role`` may not see."""
    return frozenset(
        (owner, name)
        for c in model.cubes
        for name in c.member_names()
        if not c.visible(name, role)
        for owner in (type_name(c), where_name(c), order_name(c))
    )


def without(document: DocumentNode, hidden: Hidden) -> DocumentNode:
    """The schema ``document`` (SDL) less ``hidden`` fields, the types they leave empty
    (and what refers to those) and the types they leave unreachable."""
    if not hidden:
        return document
    gone: set[str] = set()
    while True:
        defs = [_less(d, hidden, gone) for d in document.definitions]
        emptied = {name for d in defs if (name := _emptied(d))} - gone
        if not emptied:
            break
        gone |= emptied
    lost = _reachable(document.definitions) - _reachable(defs)
    kept = [d for d in defs if not (isinstance(d, TypeDefinitionNode) and d.name.value in lost)]
    return replace(document, definitions=tuple(kept))


def _named(t: TypeNode) -> str:
    while not isinstance(t, NamedTypeNode):
        t = t.type  # type: ignore[attr-defined]  # a list or non-null type
    return t.name.value


def _less(d: DefinitionNode, hidden: Hidden, gone: set[str]) -> DefinitionNode:
    if isinstance(d, UnionTypeDefinitionNode):
        return replace(d, types=tuple(t for t in d.types or () if t.name.value not in gone))
    if isinstance(d, InputObjectTypeDefinitionNode):
        owner = d.name.value
        fields = d.fields or ()
        return replace(d, fields=tuple(f for f in fields if _kept(owner, f, hidden, gone)))
    if isinstance(d, ObjectTypeDefinitionNode | InterfaceTypeDefinitionNode):
        owner = d.name.value
        kept = tuple(
            replace(f, arguments=_args(f.arguments, gone))
            for f in d.fields or ()
            if _kept(owner, f, hidden, gone)
        )
        interfaces = tuple(i for i in d.interfaces or () if i.name.value not in gone)
        return replace(d, fields=kept, interfaces=interfaces)
    return d


def _kept(
    owner: str, f: FieldDefinitionNode | InputValueDefinitionNode, hidden: Hidden, gone: set[str]
) -> bool:
    return (owner, f.name.value) not in hidden and _named(f.type) not in gone


def _args(
    args: Iterable[InputValueDefinitionNode] | None, gone: set[str]
) -> tuple[InputValueDefinitionNode, ...]:
    return tuple(a for a in args or () if _named(a.type) not in gone)


def _emptied(d: DefinitionNode) -> str | None:
    """The name of a type with nothing left in it (no field, or a union of no type)."""
    if isinstance(d, UnionTypeDefinitionNode):
        return None if d.types else d.name.value
    if isinstance(d, ObjectTypeDefinitionNode | InterfaceTypeDefinitionNode):
        return None if d.fields else d.name.value
    if isinstance(d, InputObjectTypeDefinitionNode):
        return None if d.fields else d.name.value
    return None


class _Names(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def enter_named_type(self, node: NamedTypeNode, *_: object) -> None:
        self.found.append(node.name.value)


def _names(node: Node) -> list[str]:
    names = _Names()
    visit(node, names)
    return names.found


def _reachable(defs: Iterable[DefinitionNode]) -> set[str]:
    """The types reachable from the root types and the directives' arguments."""
    types = {d.name.value: d for d in defs if isinstance(d, TypeDefinitionNode)}
    schemas = [d for d in defs if isinstance(d, SchemaDefinitionNode)]
    others = [d for d in defs if not isinstance(d, TypeDefinitionNode | SchemaDefinitionNode)]
    todo = [n for d in schemas for n in _names(d)] or ["Query", "Mutation", "Subscription"]
    todo += [n for d in others for n in _names(d)]  # directive definitions
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or name not in types:
            continue
        seen.add(name)
        todo.extend(_names(types[name]))
    return seen
