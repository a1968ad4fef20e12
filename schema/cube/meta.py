"""``cubeMeta``: every cube with its measures, dimensions, types, formats, hierarchies,
segments, joins and rollups, for dashboard builders."""

from __future__ import annotations

import strawberry

from semantic.model import Cube, Model


@strawberry.type(description="A measure of a cube.")
class CubeMeasureMeta:
    name: str
    title: str
    description: str
    type: str = strawberry.field(description="count count_distinct sum avg min max number")
    format: str = strawberry.field(description="none number integer currency percent")
    additive: bool = strawberry.field(
        description="count or sum: toDate and shareOfTotal apply; rollups can answer it"
    )


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


def _meta(c: Cube) -> CubeMeta:
    from semantic.model import DimensionType, Granularity, summable

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
            )
            for m in c.measures
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
            )
            for d in c.dimensions
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
            CubeHierarchyMeta(name=h.name, title=h.title, levels=list(h.levels))
            for h in c.hierarchies
        ],
        joins=[CubeJoinMeta(cube=j.cube, relationship=j.relationship.value) for j in c.joins],
        rollups=[
            CubeRollupMeta(
                name=p.name,
                measures=list(p.measures),
                dimensions=list(p.dimensions),
                time_dimension=p.time_dimension,
                granularity=p.granularity.value,
                timezone=p.timezone,
            )
            for p in c.pre_aggregations
        ],
    )


def cube_meta_of(model: Model) -> list[CubeMeta]:
    return [_meta(c) for c in model.cubes]
