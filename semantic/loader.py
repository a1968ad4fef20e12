"""YAML files → ``Model``, keeping the file and line of every node.

Structural problems (a missing key, a wrong type, an unknown enum value) become issues, not
exceptions, so ``load`` reports them together with the semantic rules of ``validate``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import yaml

from semantic.model import (
    Cube,
    Dimension,
    DimensionType,
    Format,
    Granularity,
    Hierarchy,
    Join,
    Loc,
    Measure,
    MeasureType,
    Model,
    PreAggregation,
    Relationship,
    Segment,
)

MODELS_DIR = Path(__file__).resolve().parent / "models"
LINE = "__line__"
E = TypeVar("E", bound=Enum)
T = TypeVar("T")


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader whose mappings carry the 1-based line they start on under ``__line__``."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping = super().construct_mapping(node, deep=deep)
        mapping[LINE] = node.start_mark.line + 1
        return mapping


class _Reader:
    """Reads one file's mappings, recording structural issues instead of raising."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.issues: list[str] = []

    def loc(self, node: dict[str, Any]) -> Loc:
        return Loc(self.file, int(node.get(LINE, 1)))

    def issue(self, loc: Loc, message: str) -> None:
        self.issues.append(f"{loc}: {message}")

    def text(self, node: dict[str, Any], key: str, *, required: bool = False) -> str:
        value = node.get(key)
        if value is None:
            if required:
                self.issue(self.loc(node), f"missing required key {key!r}")
            return ""
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            self.issue(self.loc(node), f"{key!r} must be a string")
            return ""
        return str(value)

    def enum(self, node: dict[str, Any], key: str, kind: type[E], default: E | None = None) -> E:
        raw = node.get(key)
        if raw is None and default is not None:
            return default
        try:
            return kind(raw)
        except ValueError:
            allowed = ", ".join(str(m.value) for m in kind)
            self.issue(self.loc(node), f"{key} {raw!r} is not one of: {allowed}")
            return default if default is not None else next(iter(kind))

    def names(self, node: dict[str, Any], key: str) -> tuple[str, ...]:
        value = node.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.issue(self.loc(node), f"{key!r} must be a list of names")
            return ()
        return tuple(value)

    def items(
        self, node: dict[str, Any], key: str, build: Callable[[dict[str, Any]], T]
    ) -> tuple[T, ...]:
        value = node.get(key, [])
        if not isinstance(value, list):
            self.issue(self.loc(node), f"{key!r} must be a list")
            return ()
        out: list[T] = []
        for item in value:
            if not isinstance(item, dict):
                self.issue(self.loc(node), f"every entry of {key!r} must be a mapping")
                continue
            out.append(build(item))
        return tuple(out)

    def cube(self, node: dict[str, Any]) -> Cube:
        return Cube(
            name=self.text(node, "cube", required=True),
            loc=self.loc(node),
            sql_table=self.text(node, "sql_table") or None,
            sql=self.text(node, "sql") or None,
            title=self.text(node, "title"),
            description=self.text(node, "description"),
            joins=self.items(node, "joins", self.join),
            dimensions=self.items(node, "dimensions", self.dimension),
            measures=self.items(node, "measures", self.measure),
            segments=self.items(node, "segments", self.segment),
            hierarchies=self.items(node, "hierarchies", self.hierarchy),
            pre_aggregations=self.items(node, "pre_aggregations", self.pre_aggregation),
        )

    def join(self, n: dict[str, Any]) -> Join:
        rel = self.enum(n, "relationship", Relationship, Relationship.MANY_TO_ONE)
        return Join(
            self.text(n, "cube", required=True),
            rel,
            self.text(n, "sql", required=True),
            self.loc(n),
        )

    def dimension(self, n: dict[str, Any]) -> Dimension:
        return Dimension(
            name=self.text(n, "name", required=True),
            type=self.enum(n, "type", DimensionType, DimensionType.STRING),
            sql=self.text(n, "sql", required=True),
            loc=self.loc(n),
            title=self.text(n, "title"),
            description=self.text(n, "description"),
            format=self.enum(n, "format", Format, Format.NONE),
            primary_key=bool(n.get("primary_key", False)),
            values=self.values(n),
            public=self.flag(n, "public", True),
            roles=self.names(n, "roles"),
        )

    def flag(self, node: dict[str, Any], key: str, default: bool) -> bool:
        value = node.get(key, default)
        if not isinstance(value, bool):
            self.issue(self.loc(node), f"{key!r} must be true or false")
            return default
        return value

    def fraction(self, node: dict[str, Any], key: str) -> float | None:
        value = node.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.issue(self.loc(node), f"{key!r} must be a number")
            return None
        return float(value)

    def values(self, node: dict[str, Any]) -> tuple[str, ...]:
        raw = node.get("values")
        if raw is None:
            return ()
        if not isinstance(raw, list) or not all(isinstance(v, str) and v for v in raw):
            self.issue(self.loc(node), "'values' must be a list of non-empty strings")
            return ()
        if len({v.lower() for v in raw}) != len(raw):
            self.issue(self.loc(node), "'values' repeats a value (compared case-insensitively)")
        return tuple(raw)

    def measure(self, n: dict[str, Any]) -> Measure:
        return Measure(
            name=self.text(n, "name", required=True),
            type=self.enum(n, "type", MeasureType, MeasureType.COUNT),
            sql=self.text(n, "sql") or None,
            loc=self.loc(n),
            title=self.text(n, "title"),
            description=self.text(n, "description"),
            format=self.enum(n, "format", Format, Format.NONE),
            percentile=self.fraction(n, "percentile"),
            time_dimension=self.text(n, "time_dimension") or None,
            public=self.flag(n, "public", True),
            roles=self.names(n, "roles"),
        )

    def segment(self, n: dict[str, Any]) -> Segment:
        return Segment(
            self.text(n, "name", required=True),
            self.text(n, "sql", required=True),
            self.loc(n),
            self.text(n, "title"),
            self.text(n, "description"),
        )

    def hierarchy(self, n: dict[str, Any]) -> Hierarchy:
        return Hierarchy(
            self.text(n, "name", required=True),
            self.names(n, "levels"),
            self.loc(n),
            self.text(n, "title"),
        )

    def pre_aggregation(self, n: dict[str, Any]) -> PreAggregation:
        return PreAggregation(
            name=self.text(n, "name", required=True),
            measures=self.names(n, "measures"),
            dimensions=self.names(n, "dimensions"),
            time_dimension=self.text(n, "time_dimension", required=True),
            granularity=self.enum(n, "granularity", Granularity, Granularity.DAY),
            loc=self.loc(n),
            timezone=self.text(n, "timezone") or "UTC",
        )


def parse_yaml(path: Path) -> tuple[Any, str | None]:
    """The document of ``path`` (each mapping with its line), or the issue (``file:line:``)
    that keeps it from being read: invalid YAML, bytes that are not UTF-8, nesting deeper
    than the parser recurses (each was a traceback)."""
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_LineLoader), None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        byte = exc.object[exc.start]
        return None, f"{path.name}:{line}: not UTF-8 text (byte 0x{byte:02x})"
    except RecursionError:
        return None, f"{path.name}:1: invalid YAML: nested too deeply to read"
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        return None, f"{path.name}:{line}: invalid YAML: {getattr(exc, 'problem', exc)}"


def read_files(paths: Iterable[Path]) -> tuple[Model, list[str]]:
    """Parse every file; return the model and the structural issues found on the way."""
    cubes: list[Cube] = []
    issues: list[str] = []
    for path in sorted(paths):
        reader = _Reader(path.name)
        doc, issue = parse_yaml(path)
        if issue:
            issues.append(issue)
            continue
        if not isinstance(doc, dict):
            issues.append(f"{path.name}:1: a model file must hold one mapping (one cube)")
            continue
        cubes.append(reader.cube(doc))
        issues.extend(reader.issues)
    return Model(tuple(cubes)), issues


def model_files(directory: Path = MODELS_DIR) -> list[Path]:
    return sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")])
