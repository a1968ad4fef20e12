"""The shipped model: loads, covers the issue's cubes and members, and validation reports
every issue at once with file:line (library and CLI)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from semantic.loader import MODELS_DIR
from semantic.model import DimensionType, Format, MeasureType
from semantic.validate import ModelError, check, default_model, load_model

REQUIRED = {
    "sales": (
        "revenue grossRevenue discount cost margin marginRate quantity lineCount orderCount "
        "averageOrderValue customerCount",
        "status channel paymentMethod",
        "orderedAt",
    ),
    "orders": (
        "count averageItems averageHoursToDeliver cancellationRate medianOrderValue "
        "p90HoursToDeliver",
        "status channel",
        "orderedAt",
    ),
    "customers": ("count", "segment gender ageBand country region city", ""),
    "products": ("count", "category subcategory brand name", ""),
    "returns": ("count quantity refundAmount returnRate", "reason status", "returnedAt"),
    "feedback": ("count averageRating complaintCount complaintRate", "kind", "createdAt"),
    "stock": ("unitsOnHand productsOutOfStock", "productId", "snapshotDate"),
    "support": (
        "ticketCount resolvedCount resolutionRate averageResolutionHours averageSatisfaction",
        "status priority category channel",
        "openedAt",
    ),
}


def test_shipped_model_covers_the_issue() -> None:
    model = default_model()
    for name, (measures, dims, time) in REQUIRED.items():
        cube = model.cube(name)
        assert cube is not None, name
        for measure in measures.split():
            assert cube.measure(measure) is not None, f"{name}.{measure}"
        for dim in dims.split():
            found = cube.dimension(dim)
            assert found is not None and found.type is not DimensionType.TIME, f"{name}.{dim}"
        for t in time.split():
            found = cube.dimension(t)
            assert found is not None and found.type is DimensionType.TIME, f"{name}.{t}"
    sales = model.cube("sales")
    assert sales is not None
    assert {j.cube for j in sales.joins} == {"customers", "products", "rfm"}
    aov = sales.measure("averageOrderValue")
    assert aov is not None and aov.type is MeasureType.NUMBER
    assert aov.sql == "{revenue} / NULLIF({orderCount}, 0)"
    revenue = sales.measure("revenue")
    assert revenue is not None and revenue.format is Format.CURRENCY
    for name in ("returns", "feedback", "support", "orders"):
        cube = model.cube(name)
        assert cube is not None and cube.join("customers") is not None
    customers, products = model.cube("customers"), model.cube("products")
    assert customers and customers.hierarchies[0].levels == ("country", "region", "city")
    assert products and products.hierarchies[0].levels == ("category", "subcategory", "brand")
    assert sales.pre_aggregations and sales.measure("revenue")


def test_nodes_keep_file_and_line() -> None:
    sales = default_model().cube("sales")
    assert sales is not None
    text = (MODELS_DIR / "sales.yml").read_text().splitlines()
    revenue = sales.measure("revenue")
    assert revenue is not None and revenue.loc.file == "sales.yml"
    assert text[revenue.loc.line - 1].strip() == "- name: revenue"


BAD = {
    "a.yml": """\
cube: alpha
sql_table: dw.fact_sales
joins:
  - cube: beta
    relationship: many_to_one
    sql: "{CUBE}.x = {beta}.x"
  - cube: gamma
    relationship: many_to_one
    sql: "{CUBE}.x = {gamma}.x"
dimensions:
  - name: status
    type: string
    sql: "{CUBE}.status"
  - name: status
    type: string
    sql: "{CUBE}.status2"
  - name: at
    type: time
    sql: "{CUBE}.at"
measures:
  - name: revenue
    type: sum
    sql: "{CUBE}.net"
  - name: rate
    type: number
    sql: "{revenu} / NULLIF({count}, 0)"
  - name: loop
    type: number
    sql: "{loop} + 1"
  - name: median
    type: percentile
    sql: "{CUBE}.net"
  - name: stockLevel
    type: last
    sql: "{CUBE}.units"
    time_dimension: status
  - name: secret
    type: sum
    sql: "{CUBE}.x"
    public: false
    roles: [admin, boss]
  - name: loud
    type: sum
    sql: "{CUBE}.x"
    roles: [analyst]
pre_aggregations:
  - name: daily
    measures: [revenue, median]
    dimensions: [status, beta.colour, beta.echo]
    time_dimension: at
    granularity: fortnight
hierarchies:
  - name: timeline
    levels: [status, at]
""",
    "b.yml": """\
cube: beta
sql_table: dw.dim_product
joins:
  - cube: alpha
    relationship: many_to_one
    sql: "{CUBE}.x = {alpha}.x"
dimensions:
  - name: key
    type: number
    sql: "{CUBE}.product_key"
    values: ["1"]
  - name: echo
    type: string
    sql: "{alpha.status}"
  - name: mirror
    type: string
    sql: "{alpha.nope}"
""",
}


@pytest.fixture
def bad_models(tmp_path: Path) -> Path:
    for name, text in BAD.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_validation_reports_every_issue_with_file_and_line(bad_models: Path) -> None:
    _, issues = check(bad_models)
    text = "\n".join(issues)
    expected = [
        "a.yml:4: join alpha -> beta needs a primary key on 'beta'",  # beta has none
        "a.yml:7: join from 'alpha' to unknown cube 'gamma'",
        "a.yml:14: duplicate name alpha.status (first at a.yml:11)",
        "a.yml:24: measure alpha.rate references missing measure 'revenu' (did you mean: revenue",
        "a.yml:24: measure alpha.rate references missing measure 'count'",
        "a.yml:27: measure alpha.loop refers to itself",
        "a.yml:30: measure alpha.median (percentile) needs 'percentile' between 0 and 1",
        "a.yml:33: measure alpha.stockLevel (last) needs 'time_dimension': a time dimension",
        "a.yml:37: alpha.secret: unknown role 'boss'",
        "a.yml:42: alpha.loud: 'roles' apply to members with public: false",
        "a.yml:47: granularity 'fortnight' is not one of",
        "a.yml:47: rollup alpha.daily names unknown dimension 'beta.colour'",
        "a.yml:47: rollup alpha.daily: measure 'median' (percentile) is not additive",
        "a.yml:53: hierarchy alpha.timeline: level 'at' is a time dimension; levels are string",
        "join cycle",
        "b.yml:4: join beta -> alpha needs a primary key on 'alpha'",
        "b.yml:8: dimension beta.key is number; only string dimensions declare 'values'",
        "b.yml:15: dimension beta.mirror reads unknown dimension alpha.nope",
        "a.yml:47: rollup alpha.daily: 'beta.echo' reads another cube's dimension",
    ]
    for e in expected:
        assert e in text, f"missing {e!r} in:\n{text}"
    with pytest.raises(ModelError) as info:
        load_model(bad_models)
    assert info.value.code == "MODEL_INVALID"
    assert info.value.issues == issues


def test_cli_validate_prints_all_issues_and_fails(
    bad_models: Path, cli_env: dict[str, str]
) -> None:
    cmd = [sys.executable, "-c", "from api.cli import main; main()", "semantic", "validate"]
    bad = subprocess.run(
        [*cmd, "--models", str(bad_models)], env=cli_env, capture_output=True, text=True
    )
    assert bad.returncode == 1
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == len(check(bad_models)[1]) >= 10
    assert all(line.startswith("error[MODEL_INVALID]: ") for line in lines)
    good = subprocess.run(cmd, env=cli_env, capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
    assert "model ok: 10 cubes" in good.stdout
