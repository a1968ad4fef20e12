"""The RFM rule table (``semantic/models/rules/rfm.yml``): loaded into typed frozen objects
and validated with every issue at once, like the cube model (``semantic/validate.py``).

The ETL applies it (``etl/sql/fact_customer_rfm.sql``, the rules bound as one array of
cells); the cubes ``segmentMigration`` and ``customers { rfmSegment }`` read what it wrote.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from semantic.loader import LINE, MODELS_DIR, parse_yaml
from semantic.model import Loc
from semantic.validate import ModelError

RFM_FILE = MODELS_DIR / "rules" / "rfm.yml"


@dataclass(frozen=True)
class SegmentRule:
    name: str
    recency: tuple[int, int]  # inclusive score range
    fm: tuple[int, int]
    loc: Loc
    description: str = ""

    def holds(self, r: int, fm: int) -> bool:
        return self.recency[0] <= r <= self.recency[1] and self.fm[0] <= fm <= self.fm[1]


@dataclass(frozen=True)
class RfmRules:
    window_days: int
    scores: int
    segments: tuple[SegmentRule, ...]
    loc: Loc

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.segments)

    def segment(self, r: int, fm: int) -> str:
        return next(s.name for s in self.segments if s.holds(r, fm))

    def digest(self) -> str:
        """What the ETL's result depends on, as one md5: a month built with other rules is
        rebuilt rather than redone by what moved."""
        text = json.dumps([self.window_days, self.scores, self.cells()])
        return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()

    def cells(self) -> list[str]:
        """The segment of every (r, fm) cell, as the ETL's SQL binds it: cell (r, fm) at
        ``(r - 1) * scores + fm`` (1-based) of one array."""
        return [self.segment(r, fm) for r in range(1, self.scores + 1)
                for fm in range(1, self.scores + 1)]  # fmt: skip


def _int(node: dict[str, Any], key: str, loc: Loc, issues: list[str]) -> int:
    value = node.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        issues.append(f"{loc}: {key!r} must be a positive integer")
        return 1
    return value


def _range(
    node: dict[str, Any], key: str, loc: Loc, scores: int, issues: list[str]
) -> tuple[int, int]:
    value = node.get(key)
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        or not 1 <= value[0] <= value[1] <= scores
    ):
        issues.append(f"{loc}: {key!r} must be [low, high] with 1 <= low <= high <= {scores}")
        return (1, 0)
    return (value[0], value[1])


def read(path: Path = RFM_FILE) -> tuple[RfmRules | None, list[str]]:
    """Parse and validate; the rules (None when unreadable) and every issue found."""
    name = path.name
    doc, issue = parse_yaml(path)
    if issue:
        return None, [issue]
    if not isinstance(doc, dict):
        return None, [f"{name}:1: the RFM rules must be one mapping"]
    issues: list[str] = []
    top = Loc(name, int(doc.get(LINE, 1)))
    window = _int(doc, "window_days", top, issues)
    scores = _int(doc, "scores", top, issues)
    rules: list[SegmentRule] = []
    raw = doc.get("segments")
    if not isinstance(raw, list) or not raw:
        issues.append(f"{top}: 'segments' must be a non-empty list")
        raw = []
    for node in raw:
        if not isinstance(node, dict):
            issues.append(f"{top}: every segment must be a mapping")
            continue
        loc = Loc(name, int(node.get(LINE, 1)))
        seg = node.get("name")
        if not isinstance(seg, str) or not seg.strip():
            issues.append(f"{loc}: a segment needs a 'name'")
            seg = ""
        rules.append(
            SegmentRule(
                seg,
                _range(node, "recency", loc, scores, issues),
                _range(node, "fm", loc, scores, issues),
                loc,
                str(node.get("description") or ""),
            )
        )
    out = RfmRules(window, scores, tuple(rules), top)
    return out, issues + validate(out)


def validate(rules: RfmRules) -> list[str]:
    """Names unique; every (recency, fm) cell held by exactly one rule."""
    issues: list[str] = []
    seen: dict[str, SegmentRule] = {}
    for s in rules.segments:
        if s.name in seen:
            issues.append(f"{s.loc}: segment {s.name!r} repeats the one at {seen[s.name].loc}")
        seen.setdefault(s.name, s)
    for r in range(1, rules.scores + 1):
        for fm in range(1, rules.scores + 1):
            holders = [s for s in rules.segments if s.holds(r, fm)]
            if not holders:
                issues.append(f"{rules.loc}: no segment holds recency {r}, fm {fm}")
            elif len(holders) > 1:
                both = ", ".join(f"{s.name!r} ({s.loc})" for s in holders)
                issues.append(f"{holders[1].loc}: recency {r}, fm {fm} is held by {both}")
    return issues


def load(path: Path = RFM_FILE) -> RfmRules:
    rules, issues = read(path)
    if issues or rules is None:
        raise ModelError(issues)
    return rules


@cache
def default_rules() -> RfmRules:
    """The shipped rules, loaded and validated once per process."""
    return load(RFM_FILE)
