"""``cubeMeta``: every cube with its measures, dimensions, types, formats, hierarchies,
segments, joins and rollups, for dashboard builders, as the caller's role sees the model
(members declared ``public: false`` appear only to the roles allowed to see them)."""

from __future__ import annotations

import strawberry

from semantic.model import HIDDEN_DEFAULT_ROLES, Cube, Dimension, Measure, Model

_PUBLIC = "false: hidden from roles not in roles (shown to those allowed)"
_ROLES = "who may see a non-public member"


@strawberry.type(description="A measure of a cube.")
class CubeMeasureMeta:
    name: str
    title: str
    description: str
    type: str = strawberry.field(
        description="count count_distinct sum avg min max number last percentile"
    )
    format: str = strawberry.field(description="none number integer currency percent")
    additive: bool = strawberry.field(
        description="count or sum: toDate, rolling and shareOfTotal apply; rollups can answer it"
    )
    graphql_type: str = strawberry.field(
        description="Int (counts, and sums/lasts declared format: integer) or Float"
    )
    percentile: float | None = strawberry.field(
        description="percentile measures: the fraction (0.5 is the median)"
    )
    time_dimension: str | None = strawberry.field(
        description="last measures (semi-additive): the snapshot time whose last value each "
        "bucket takes (summed over the other dimensions)"
    )
    public: bool = strawberry.field(description=_PUBLIC)
    roles: list[str] = strawberry.field(description=_ROLES)


@strawberry.type(description="A dimension of a cube.")
class CubeDimensionMeta:
    name: str
    title: str
    description: str
    type: str = strawberry.field(description="string number boolean time")
    format: str
    primary_key: bool
    granularities: list[str] = strawberry.field(description="time dimensions only")
    values: list[str] = strawberry.field(
        description="the closed set of values of the dimension (empty: free text); filters "
        "match them case-insensitively and refuse any other value"
    )
    public: bool = strawberry.field(description=_PUBLIC)
    roles: list[str] = strawberry.field(description=_ROLES)


@strawberry.type(description="A named filter.")
class CubeSegmentMeta:
    name: str
    title: str
    description: str
    enum_value: str = strawberry.field(description="the CubeSegment value that selects it")


@strawberry.type(description="Ordered levels for drill-down.")
class CubeHierarchyMeta:
    name: str
    title: str
    levels: list[str]


@strawberry.type(description="A join to another cube.")
class CubeJoinMeta:
    cube: str
    relationship: str


@strawberry.type(description="A pre-aggregation in schema dw_rollup.")
class CubeRollupMeta:
    name: str
    measures: list[str]
    dimensions: list[str]
    time_dimension: str
    granularity: str
    timezone: str


@strawberry.type(description="A cube of the semantic model.")
class CubeMeta:
    name: str
    title: str
    description: str
    measures: list[CubeMeasureMeta]
    dimensions: list[CubeDimensionMeta]
    segments: list[CubeSegmentMeta]
    hierarchies: list[CubeHierarchyMeta]
    joins: list[CubeJoinMeta]
    rollups: list[CubeRollupMeta]


def _roles(member: Dimension | Measure) -> list[str]:
    return [] if member.public else list(member.roles or HIDDEN_DEFAULT_ROLES)


def _meta(model: Model, c: Cube, role: str | None) -> CubeMeta:
    from semantic.model import DimensionType, Granularity, summable

    def seen(name: str) -> bool:
        return c.visible(name, role)

    return CubeMeta(
        name=c.name,
        title=c.title,
        description=c.description,
        measures=[
            CubeMeasureMeta(
                name=m.name,
                title=m.title,
                description=m.description,
                type=m.type.value,
                format=m.format.value,
                additive=summable(m.type),
                graphql_type="Int" if m.integer else "Float",
                percentile=m.percentile,
                time_dimension=m.time_dimension,
                public=m.public,
                roles=_roles(m),
            )
            for m in c.measures
            if m.visible_to(role)
        ],
        dimensions=[
            CubeDimensionMeta(
                name=d.name,
                title=d.title,
                description=d.description,
                type=d.type.value,
                format=d.format.value,
                primary_key=d.primary_key,
                granularities=[g.value for g in Granularity]
                if d.type is DimensionType.TIME
                else [],
                values=list(d.values),
                public=d.public,
                roles=_roles(d),
            )
            for d in c.dimensions
            if d.visible_to(role)
        ],
        segments=[
            CubeSegmentMeta(
                name=s.name,
                title=s.title,
                description=s.description,
                enum_value=f"{c.name}_{s.name}",
            )
            for s in c.segments
        ],
        hierarchies=[
            CubeHierarchyMeta(name=h.name, title=h.title, levels=[x for x in h.levels if seen(x)])
            for h in c.hierarchies
        ],
        joins=[CubeJoinMeta(cube=j.cube, relationship=j.relationship.value) for j in c.joins],
        rollups=[
            CubeRollupMeta(
                name=p.name,
                measures=[x for x in p.measures if seen(x)],
                dimensions=[x for x in p.dimensions if _seen_ref(model, c, x, role)],
                time_dimension=p.time_dimension,
                granularity=p.granularity.value,
                timezone=p.timezone,
            )
            for p in c.pre_aggregations
        ],
    )


def _seen_ref(model: Model, c: Cube, ref: str, role: str | None) -> bool:
    """A rollup dimension (``member`` or ``cube.member``) ``role`` may see."""
    owner, _, name = ref.rpartition(".")
    cube = model.cube(owner) if owner else c
    return cube is not None and cube.visible(name, role)


def cube_meta_of(model: Model, role: str | None) -> list[CubeMeta]:
    return [_meta(model, c, role) for c in model.cubes]
