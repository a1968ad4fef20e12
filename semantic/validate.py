"""Validation rules over a loaded ``Model``; each returns a list of ``file:line: message``.

``load_model`` runs the loader and every rule and raises one ``ModelError`` listing all
issues, so an author fixes a model in one pass.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

from db.errors import CdmsError
from semantic.loader import MODELS_DIR, model_files, read_files
from semantic.model import (
    CUBE_NAME_RE,
    NAME_RE,
    REF_RE,
    ROLES,
    DimensionType,
    Loc,
    MeasureType,
    Model,
    Relationship,
    additive,
)


class ModelError(CdmsError):
    code = "MODEL_INVALID"

    def __init__(self, issues: list[str]) -> None:
        super().__init__(
            f"{len(issues)} issue(s) in the semantic model: " + "; ".join(issues), issues=issues
        )
        self.issues = issues


Rule = Callable[[Model], list[str]]


def names_and_duplicates(model: Model) -> list[str]:
    issues: list[str] = []
    seen: dict[str, str] = {}
    for cube in model.cubes:
        if not CUBE_NAME_RE.match(cube.name):
            issues.append(
                f"{cube.loc}: cube name {cube.name!r} must be lower_snake_case or camelCase"
            )
        if cube.name in seen:
            issues.append(f"{cube.loc}: duplicate cube {cube.name!r} (first at {seen[cube.name]})")
        seen[cube.name] = str(cube.loc)
        members: dict[str, str] = {}
        for name, loc in cube.named_nodes():
            if not NAME_RE.match(name):
                issues.append(f"{loc}: name {name!r} must be lowerCamelCase")
            if name in members:
                issues.append(
                    f"{loc}: duplicate name {cube.name}.{name} (first at {members[name]})"
                )
            members[name] = str(loc)
    return issues


def sources(model: Model) -> list[str]:
    issues = []
    for cube in model.cubes:
        if (cube.sql_table is None) == (cube.sql is None):
            issues.append(f"{cube.loc}: cube {cube.name!r} needs exactly one of sql_table, sql")
        for m in cube.measures:
            needs_sql = m.type not in (MeasureType.COUNT,)
            if needs_sql and not m.sql:
                issues.append(f"{m.loc}: measure {cube.name}.{m.name} ({m.type.value}) needs sql")
    return issues


def joins(model: Model) -> list[str]:
    issues = []
    for cube in model.cubes:
        for j in cube.joins:
            target = model.cube(j.cube)
            if target is None:
                issues.append(
                    f"{j.loc}: join from {cube.name!r} to unknown cube {j.cube!r}"
                    + _close(j.cube, model.names())
                )
                continue
            if j.relationship is not Relationship.ONE_TO_MANY and not target.primary_key:
                issues.append(
                    f"{j.loc}: join {cube.name} -> {j.cube} needs a primary key on {j.cube!r}"
                )
            if j.relationship is Relationship.ONE_TO_MANY and not cube.primary_key:
                issues.append(
                    f"{j.loc}: join {cube.name} -> {j.cube} needs a primary key on {cube.name!r}"
                )
            for ref in REF_RE.findall(j.sql):
                if ref not in ("CUBE", j.cube, cube.name):
                    issues.append(
                        f"{j.loc}: join sql names {{{ref}}}; use {{CUBE}} or {{{j.cube}}}"
                    )
    issues.extend(_join_cycles(model))
    return issues


def _join_cycles(model: Model) -> list[str]:
    edges = {c.name: [j.cube for j in c.joins if model.cube(j.cube)] for c in model.cubes}
    issues: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for nxt in edges.get(name, []):
            if state.get(nxt) == 1:
                cycle = " -> ".join([*path[path.index(nxt) :], nxt])
                cube = model.cube(name)
                issues.append(f"{cube.loc if cube else name}: join cycle {cycle}")
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[name] = 2

    for c in model.cubes:
        if c.name not in state:
            visit(c.name, [c.name])
    return issues


def measures(model: Model) -> list[str]:
    issues: list[str] = []
    for cube in model.cubes:
        for m in cube.measures:
            for ref in m.refs():
                owner, _, name = ref.rpartition(".")
                target = model.cube(owner) if owner else cube
                if target is None or target.measure(name) is None:
                    pool = target.member_names() if target else model.names()
                    issues.append(
                        f"{m.loc}: measure {cube.name}.{m.name} references missing measure "
                        f"{ref!r}" + _close(name, pool)
                    )
    issues.extend(_measure_cycles(model))
    issues.extend(_measure_kinds(model))
    return issues


def _measure_kinds(model: Model) -> list[str]:
    """A percentile names its fraction; a last measure names the snapshot time it picks the
    last of; neither key belongs to other kinds."""
    issues: list[str] = []
    for cube in model.cubes:
        for m in cube.measures:
            where = f"{m.loc}: measure {cube.name}.{m.name}"
            if m.type is MeasureType.PERCENTILE:
                if m.percentile is None or not 0 <= m.percentile <= 1:
                    issues.append(f"{where} (percentile) needs 'percentile' between 0 and 1")
            elif m.percentile is not None:
                issues.append(f"{where}: 'percentile' belongs to percentile measures only")
            if m.type is MeasureType.LAST:
                td = cube.dimension(m.time_dimension or "")
                if td is None or td.type is not DimensionType.TIME:
                    issues.append(
                        f"{where} (last) needs 'time_dimension': a time dimension of "
                        f"{cube.name}" + _close(m.time_dimension or "", _times(model, cube.name))
                    )
            elif m.time_dimension is not None:
                issues.append(f"{where}: 'time_dimension' belongs to last measures only")
    return issues


def _times(model: Model, cube: str) -> list[str]:
    found = model.cube(cube)
    return [d.name for d in found.time_dimensions()] if found else []


def perspectives(model: Model) -> list[str]:
    """``public: false`` members name the roles that see them, from the API's roles."""
    issues: list[str] = []
    for cube in model.cubes:
        members: list[tuple[str, bool, tuple[str, ...], Loc]] = [
            (d.name, d.public, d.roles, d.loc) for d in cube.dimensions
        ] + [(m.name, m.public, m.roles, m.loc) for m in cube.measures]
        for name, public, roles, loc in members:
            if public and roles:
                issues.append(
                    f"{loc}: {cube.name}.{name}: 'roles' apply to members with public: false"
                )
            for role in roles:
                if role not in ROLES:
                    issues.append(
                        f"{loc}: {cube.name}.{name}: unknown role {role!r} (roles: "
                        f"{', '.join(ROLES)})" + _close(role, list(ROLES))
                    )
    return issues


def _measure_cycles(model: Model) -> list[str]:
    issues: list[str] = []
    for cube in model.cubes:
        for m in cube.measures:
            stack = [(cube.name, r) for r in m.refs()]
            seen: set[tuple[str, str]] = set()
            while stack:
                owner, ref = stack.pop()
                c_name, _, name = ref.rpartition(".")
                key = (c_name or owner, name)
                if key == (cube.name, m.name):
                    issues.append(f"{m.loc}: measure {cube.name}.{m.name} refers to itself")
                    break
                if key in seen:
                    continue
                seen.add(key)
                target = model.cube(key[0])
                dep = target.measure(name) if target else None
                if dep is not None:
                    stack.extend((key[0], r) for r in dep.refs())
    return issues


def hierarchies(model: Model) -> list[str]:
    issues = []
    for cube in model.cubes:
        for h in cube.hierarchies:
            if not h.levels:
                issues.append(f"{h.loc}: hierarchy {cube.name}.{h.name} has no levels")
            for level in h.levels:
                dim = cube.dimension(level)
                if dim is None:
                    issues.append(
                        f"{h.loc}: hierarchy {cube.name}.{h.name} names unknown dimension "
                        f"{level!r}" + _close(level, [d.name for d in cube.dimensions])
                    )
                elif dim.type is not DimensionType.STRING:
                    issues.append(
                        f"{h.loc}: hierarchy {cube.name}.{h.name}: level {level!r} is a "
                        f"{dim.type.value} dimension; levels are string dimensions"
                    )
    return issues


def pre_aggregations(model: Model) -> list[str]:
    issues = []
    for cube in model.cubes:
        for p in cube.pre_aggregations:
            where = f"{p.loc}: rollup {cube.name}.{p.name}"
            for name in p.measures:
                m = cube.measure(name)
                if m is None:
                    issues.append(
                        f"{where} names unknown measure {name!r}"
                        + _close(name, [x.name for x in cube.measures])
                    )
                elif not additive(m.type):
                    issues.append(f"{where}: measure {name!r} ({m.type.value}) is not additive")
            for ref in p.dimensions:
                owner, _, name = ref.rpartition(".")
                target = model.cube(owner) if owner else cube
                dim = target.dimension(name) if target else None
                if target is None or dim is None:
                    pool = [d.name for d in target.dimensions] if target else model.names()
                    issues.append(f"{where} names unknown dimension {ref!r}" + _close(name, pool))
                elif owner and owner != cube.name and cube.join(owner) is None:
                    issues.append(
                        f"{where}: {ref!r} is on {owner!r}, which {cube.name} does not join"
                    )
                elif dim.refs():
                    issues.append(
                        f"{where}: {ref!r} reads another cube's dimension; a rollup keeps "
                        "the cube's own and its joined cubes' dimensions only"
                    )
            td = cube.dimension(p.time_dimension)
            if td is None or td.type is not DimensionType.TIME:
                issues.append(
                    f"{where}: time_dimension {p.time_dimension!r} is not a time "
                    "dimension of " + cube.name
                )
    return issues


def dimension_values(model: Model) -> list[str]:
    """A closed set of values belongs to string dimensions only."""
    return [
        f"{d.loc}: dimension {cube.name}.{d.name} is {d.type.value}; only string "
        "dimensions declare 'values'"
        for cube in model.cubes
        for d in cube.dimensions
        if d.values and d.type is not DimensionType.STRING
    ]


def dimension_refs(model: Model) -> list[str]:
    """A dimension may read one of another cube (``{rfm.segment}``): that cube's own
    dimension, itself free of such references (one step, no cycles)."""
    issues: list[str] = []
    for cube in model.cubes:
        for d in cube.dimensions:
            for owner, name in d.refs():
                target = model.cube(owner)
                dim = target.dimension(name) if target else None
                where = f"{d.loc}: dimension {cube.name}.{d.name}"
                if target is None or dim is None or owner == cube.name:
                    pool = [x.name for x in target.dimensions] if target else model.names()
                    issues.append(
                        f"{where} reads unknown dimension {owner}.{name}" + _close(name, pool)
                    )
                elif dim.refs():
                    issues.append(f"{where} reads {owner}.{name}, which reads another cube")
    return issues


RULES: tuple[Rule, ...] = (
    names_and_duplicates,
    dimension_refs,
    sources,
    joins,
    measures,
    hierarchies,
    pre_aggregations,
    dimension_values,
    perspectives,
)


def validate(model: Model) -> list[str]:
    return [issue for rule in RULES for issue in rule(model)]


def check(directory: Path = MODELS_DIR) -> tuple[Model, list[str]]:
    """Load and validate without raising: the model and every issue found."""
    files = model_files(directory)
    if not files:  # (an empty folder is a mistake, not a model of no cubes)
        return Model(), [f"{directory}: no cube files (*.yml, *.yaml) in this folder"]
    model, issues = read_files(files)
    return model, issues + validate(model)


def load_model(directory: Path = MODELS_DIR) -> Model:
    model, issues = check(directory)
    if issues:
        raise ModelError(issues)
    return model


@cache
def default_model() -> Model:
    """The shipped model (``semantic/models``), loaded and validated once per process."""
    return load_model(MODELS_DIR)


def _close(name: str, pool: list[str]) -> str:
    import difflib

    near = difflib.get_close_matches(name, pool, n=3)
    return f" (did you mean: {', '.join(near)}?)" if near else ""
