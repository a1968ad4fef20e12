"""A ``cube`` field of an operation → the semantic query and the shape of its rows.

Read from graphql-core's parsed document (the field's nodes, fragments, coerced variables),
so the resolver and the fast path (``schema.cube.fast``) read a selection the same way:
fragments expanded, ``@skip``/``@include`` applied, fields of one response key merged (as
GraphQL's CollectFields does), argument values coerced by graphql-core.

Members the caller's role may not see (``public: false``) never get here: the operation was
validated against the role's schema (schema.views), which has no field for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLObjectType,
    GraphQLSchema,
    OperationDefinitionNode,
)
from graphql.execution.collect_fields import (
    FieldDetails,
    FragmentDetails,
    collect_fields,
    collect_subfields,
)
from graphql.execution.values import VariableValues, get_argument_values

from db.errors import BadUserInputError
from schema.cube.inputs import to_filters, to_order, to_segments
from schema.cube.types import type_name
from semantic.model import Cube, DimensionType, Granularity, Model
from semantic.query import (
    Change,
    Compare,
    CubeQuery,
    DimensionField,
    MeasureField,
    Member,
    Rolling,
    ToDate,
)
from semantic.shape import Const, DimensionOut, Entry, MeasureOut, Obj, TotalsOut

Nodes = list[FieldNode]


@dataclass(frozen=True)
class CubeRequest:
    query: CubeQuery
    shape: Obj


def variables_of(values: Any) -> VariableValues:
    """graphql-core's container of coerced variables (a resolver's info holds the dict)."""
    if isinstance(values, VariableValues):
        return values
    return VariableValues(sources={}, coerced=dict(values or {}))


class Reader:
    def __init__(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        variables: Any,
        model: Model,
    ) -> None:
        self.schema = schema
        self.operation = operation
        self.fragments = {
            d.name.value: FragmentDetails(d)
            for d in document.definitions
            if isinstance(d, FragmentDefinitionNode)
        }
        self.variables = variables_of(variables)
        self.model = model
        # the ``drill`` fields of the rows read last (response key -> nodes): filled after
        # the cube's answer (schema.cube.celldrill), not by the cube's SQL
        self.drills: dict[str, Nodes] = {}

    # -- collecting fields (graphql-core's CollectFields) --------------------------------
    def roots(self) -> dict[str, Nodes]:
        """The operation's root fields by response key, in document order."""
        root = self.schema.get_root_type(self.operation.operation)
        assert root is not None
        found = collect_fields(self.schema, self.fragments, self.variables, root, self.operation)
        return {k: [d.node for d in v] for k, v in found.grouped_field_set.items()}

    def collect(self, parent: str, nodes: Nodes) -> dict[str, Nodes]:
        """The fields selected under ``nodes`` (of type ``parent``) by response key."""
        gtype = self.schema.get_type(parent)
        assert isinstance(gtype, GraphQLObjectType)
        details = [FieldDetails(n, None) for n in nodes]
        found = collect_subfields(
            self.schema, self.fragments, self.variables, self.operation, gtype, details
        )
        return {k: [d.node for d in v] for k, v in found.grouped_field_set.items()}

    def arguments(self, parent: str, nodes: Nodes) -> dict[str, Any]:
        kind = self.schema.get_type(parent)
        assert isinstance(kind, GraphQLObjectType)
        return get_argument_values(kind.fields[nodes[0].name.value], nodes[0], self.variables)

    # -- the request -------------------------------------------------------------------
    def request(self, nodes: Nodes) -> CubeRequest:
        """The query and row shape of one ``cube`` root field (its nodes of one key)."""
        args = self.arguments("Query", nodes)
        measures, dims, shape = self.rows(nodes)
        if not measures and not dims:
            raise BadUserInputError(
                "select at least one measure or dimension under a cube", field="cube"
            )
        query = CubeQuery(
            measures=tuple(measures),
            dimensions=tuple(dims),
            filters=tuple(to_filters(args.get("where"))),
            segments=tuple(to_segments(self.model, args.get("segments"))),
            order=tuple(to_order(args.get("orderBy"))),
            limit=args["limit"],
            offset=args["offset"],
            timezone=args["timezone"],
            subtotals=args["subtotals"],
        )
        return CubeRequest(query, shape)

    def rows(self, nodes: Nodes) -> tuple[list[MeasureField], list[DimensionField], Obj]:
        """The measures, dimensions and row shape selected under ``nodes`` (a ``cube`` root
        field's ``CubeRow`` selections); its ``drill`` fields go to ``self.drills``."""
        measures: list[MeasureField] = []
        dims: list[DimensionField] = []
        entries: list[tuple[str, Entry]] = []
        self.drills = {}
        for key, parts in self.collect("CubeRow", nodes).items():
            name = parts[0].name.value
            if name == "__typename":
                entries.append((key, Const("CubeRow")))
            elif name == "drill":
                self.drills[key] = parts
            elif name == "totals":
                entries.append((key, TotalsOut()))
            else:
                cube = self.model.cube(name)
                assert cube is not None  # GraphQL validation lets only cube names through
                entries.append((key, self._cube(cube, key, parts, measures, dims)))
        return measures, dims, Obj(tuple(entries))

    def _cube(
        self,
        cube: Cube,
        prefix: str,
        nodes: Nodes,
        measures: list[MeasureField],
        dims: list[DimensionField],
    ) -> Obj:
        entries: list[tuple[str, Entry]] = []
        for key, parts in self.collect(type_name(cube), nodes).items():
            name = parts[0].name.value
            alias = f"{prefix}.{key}"
            if name == "__typename":
                entries.append((key, Const(type_name(cube))))
                continue
            member = Member(cube.name, name)
            if cube.measure(name) is not None:
                args = self.arguments(type_name(cube), parts)
                measures.append(measure_field(alias, member, args))
                entries.append((key, MeasureOut(len(measures) - 1)))
                continue
            d = cube.dimension(name)
            assert d is not None
            if d.type is not DimensionType.TIME:
                dims.append(DimensionField(alias, member))
                entries.append((key, DimensionOut(len(dims) - 1)))
                continue
            grains: list[tuple[str, Entry]] = []
            for gkey, gparts in self.collect(type_name(cube, name), parts).items():
                gname = gparts[0].name.value
                if gname == "__typename":
                    grains.append((gkey, Const(type_name(cube, name))))
                    continue
                dims.append(DimensionField(f"{alias}.{gkey}", member, Granularity(gname)))
                grains.append((gkey, DimensionOut(len(dims) - 1)))
            entries.append((key, Obj(tuple(grains))))
        return Obj(tuple(entries))


def measure_field(alias: str, member: Member, args: dict[str, Any]) -> MeasureField:
    """A measure field with its (coerced) time-intelligence arguments."""
    compare, to_date, change = args.get("compare"), args.get("toDate"), args.get("as")
    return MeasureField(
        alias,
        member,
        Compare(compare) if compare is not None else None,
        ToDate(to_date) if to_date is not None else None,
        bool(args.get("shareOfTotal")),
        bool(args.get("rank")),
        Change(change) if change is not None else Change.VALUE,
        rolling_of(member, args.get("rolling")),
    )


def rolling_of(member: Member, value: dict[str, Any] | None) -> Rolling | None:
    if value is None:
        return None
    last, ahead = value.get("last"), value.get("next")
    if (last is None) == (ahead is None):
        raise BadUserInputError(
            f"{member}: rolling needs exactly one of last, next", field=str(member)
        )
    count = int(last if last is not None else ahead or 0)
    return Rolling(count, Granularity(value["unit"].lower()), leading=ahead is not None)
