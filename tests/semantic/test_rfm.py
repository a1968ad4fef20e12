"""Behavioural segmentation: the RFM rule table, the monthly snapshot the ETL loads, and
the cubes over it (``rfm`` joined from sales as of the order's month, ``segmentMigration``),
checked against hand-written SQL over the seeded warehouse."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from etl import pipeline
from semantic import rfm
from semantic.validate import ModelError
from tests.api.conftest import make_client
from tests.api.helpers import body_of
from tests.semantic.conftest import num, sql

Gql = Any


@pytest.fixture(scope="module")
def gql(wh: Engine) -> Iterator[Gql]:
    with make_client(wh) as client:

        def run(query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
            body = body_of(
                client.post("/graphql", json={"query": query, "variables": variables or {}})
            )
            assert "errors" not in body, body
            return body["data"]  # type: ignore[no-any-return]

        yield run


def _month(wh: Engine, back: int) -> str:
    """The first day of a complete month ``back`` months before the newest snapshot."""
    (m,) = sql(wh, "SELECT (max(month) - make_interval(months => %s))::text "
                   "FROM dw.fact_customer_rfm", (back,))[0]  # fmt: skip
    return str(m)


# --- the rule table --------------------------------------------------------------------------


def test_shipped_rules_cover_every_score_cell_once() -> None:
    rules = rfm.default_rules()
    assert rules.window_days == 365 and rules.scores == 5
    assert len(rules.names) == 10 and "Can't lose" in rules.names
    cells = Counter(rules.segment(r, fm) for r in range(1, 6) for fm in range(1, 6))
    assert sum(cells.values()) == 25
    assert rules.segment(5, 5) == "Champions" and rules.segment(1, 1) == "Lost"


def test_bad_rules_are_reported_together_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "rfm.yml"
    text = rfm.RFM_FILE.read_text(encoding="utf-8")
    # Lost also claims fm 3 (overlap with At risk), New disappears (a gap), a name repeats
    text = text.replace(
        "  - name: Lost\n    recency: [1, 1]\n    fm: [1, 2]",
        "  - name: Lost\n    recency: [1, 1]\n    fm: [1, 3]",
    )
    text = text.replace("  - name: New\n", "  - name: Loyal\n")
    text = text.replace(
        "    recency: [5, 5]\n    fm: [1, 1]", "    recency: [5, 5]\n    fm: [1, 9]"
    )
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ModelError) as err:
        rfm.load(path)
    issues = err.value.issues
    assert any("rfm.yml:" in i and "repeats" in i for i in issues), issues
    assert any("recency 1, fm 3 is held by 'At risk'" in i for i in issues), issues
    assert any("'fm' must be [low, high]" in i for i in issues), issues
    assert any("no segment holds recency 5, fm 1" in i for i in issues), issues
    assert all(i.split(":")[1].isdigit() for i in issues), issues


# --- the snapshot ----------------------------------------------------------------------------


def test_snapshot_matches_its_definition_over_app_orders(wh: Engine) -> None:
    """Recency, frequency and monetary recomputed from app.orders for one month."""
    month = _month(wh, 2)
    got = {
        r[0]: (r[1], r[2], float(r[3]))
        for r in sql(wh, "SELECT customer_id, recency_days, frequency, monetary "
                         "FROM dw.fact_customer_rfm WHERE month = %s", (month,))
    }  # fmt: skip
    want = {
        r[0]: (r[1], r[2], float(r[3]))
        for r in sql(
            wh,
            """
            WITH b AS (SELECT ((%s::date + interval '1 month')::timestamp
                               AT TIME ZONE 'UTC') AS as_of)
            SELECT o.customer_id,
                   floor(extract(epoch FROM b.as_of - max(o.ordered_at)) / 86400)::int,
                   count(*) FILTER (WHERE o.ordered_at >= b.as_of - interval '365 days'),
                   coalesce(sum(o.total_amount)
                            FILTER (WHERE o.ordered_at >= b.as_of - interval '365 days'), 0)
            FROM app.orders o, b
            WHERE o.status <> 'cancelled' AND o.ordered_at < b.as_of
            GROUP BY o.customer_id, b.as_of
            """,
            (month,),
        )
    }
    assert got == want and len(got) > 100


def test_scores_are_quintiles_and_segments_follow_the_rules(wh: Engine) -> None:
    month = _month(wh, 1)
    rows = sql(wh, "SELECT r_score, f_score, m_score, fm_score, segment, recency_days "
                   "FROM dw.fact_customer_rfm WHERE month = %s", (month,))  # fmt: skip
    rules = rfm.default_rules()
    n = len(rows)
    for col in range(3):
        sizes = Counter(r[col] for r in rows)
        assert set(sizes) == {1, 2, 3, 4, 5}
        assert max(sizes.values()) - min(sizes.values()) <= 1
    for r, f, m, fm, segment, _ in rows:
        assert fm == int((f + m) / 2 + 0.5)
        assert segment == rules.segment(r, fm)
    # recency 5 is the most recent fifth
    fives = [days for r, *_, days in rows if r == 5]
    ones = [days for r, *_, days in rows if r == 1]
    assert max(fives) <= min(ones) and n > 100


def test_a_second_run_changes_nothing(warehouse_url: str, wh: Engine) -> None:
    before = sql(wh, "SELECT md5(string_agg(f::text, ',' ORDER BY customer_id, month)) "
                     "FROM (SELECT month, customer_id, segment, r_score, f_score, m_score "
                     "      FROM dw.fact_customer_rfm) f")  # fmt: skip
    result = pipeline.run(warehouse_url)
    step = next(s for s in result.steps if s.step == "fact_customer_rfm")
    assert step.counts.inserted == step.counts.deleted == 0
    assert sql(wh, "SELECT md5(string_agg(f::text, ',' ORDER BY customer_id, month)) "
                   "FROM (SELECT month, customer_id, segment, r_score, f_score, m_score "
                   "      FROM dw.fact_customer_rfm) f") == before  # fmt: skip


# --- the cubes -------------------------------------------------------------------------------


def test_sales_by_rfm_segment_is_the_segment_of_the_orders_month(gql: Gql, wh: Engine) -> None:
    data = gql("""{ cube(timezone: "UTC", limit: 1000) {
        sales { revenue orderCount } rfm { segment } } }""")
    got = {r["rfm"]["segment"]: (num(r["sales"]["revenue"]), r["sales"]["orderCount"])
           for r in data["cube"]}  # fmt: skip
    want = {
        r[0]: (num(r[1]), r[2])
        for r in sql(
            wh,
            """
            SELECT f.segment, sum(s.net), count(DISTINCT s.order_id)
            FROM dw.fact_sales s
            LEFT JOIN dw.fact_customer_rfm f
              ON f.customer_id = s.customer_id
             AND f.month = date_trunc('month', s.ordered_at AT TIME ZONE 'UTC')::date
            GROUP BY 1
            """,
        )
    }
    assert got == want
    # an order's own month counts it: every order that was not cancelled has a segment
    assert want.get(None, (0, 0))[1] <= int(
        sql(wh, "SELECT count(*) FROM dw.fact_orders WHERE is_cancelled")[0][0]
    )


def test_segment_migration_matrix_for_a_month(gql: Gql, wh: Engine) -> None:
    month = _month(wh, 1)
    data = gql(
        """query($m: [String!]!) { cube(timezone: "UTC", limit: 1000,
             where: {segmentMigration: {month: {inDateRange: $m}}}) {
             segmentMigration { fromSegment toSegment customers revenue } } }""",
        {"m": [month, month]},
    )
    got = {
        (r["segmentMigration"]["fromSegment"], r["segmentMigration"]["toSegment"]): (
            r["segmentMigration"]["customers"],
            num(r["segmentMigration"]["revenue"]),
        )
        for r in data["cube"]
    }
    want = {
        (r[0], r[1]): (r[2], num(r[3]))
        for r in sql(
            wh,
            """
            SELECT coalesce(p.segment, '(new)'), c.segment, count(*), sum(c.month_revenue)
            FROM dw.fact_customer_rfm c
            LEFT JOIN dw.fact_customer_rfm p
              ON p.customer_id = c.customer_id AND p.month = (c.month - interval '1 month')::date
            WHERE c.month = %s GROUP BY 1, 2
            """,
            (month,),
        )
    }
    assert got == want
    assert any(a != b for a, b in got), "somebody moved"
    total = sql(wh, "SELECT count(*) FROM dw.fact_customer_rfm WHERE month = %s", (month,))
    assert sum(c for c, _ in got.values()) == total[0][0]


def test_cube_meta_lists_the_segments(gql: Gql) -> None:
    data = gql("{ cubeMeta { name dimensions { name values } measures { name } } }")
    meta = {c["name"]: c for c in data["cubeMeta"]}
    seg = next(d for d in meta["rfm"]["dimensions"] if d["name"] == "segment")
    assert seg["values"] == list(rfm.default_rules().names)
    mig = {d["name"] for d in meta["segmentMigration"]["dimensions"]}
    assert {"fromSegment", "toSegment", "month"} <= mig
    assert {m["name"] for m in meta["segmentMigration"]["measures"]} == {"customers", "revenue"}


# --- customers { rfmSegment }: the segment as of the order's month -------------------------


def test_rfm_segment_of_a_customer_is_that_of_each_orders_month(gql: Gql, wh: Engine) -> None:
    """A customer whose segment changed between two months of orders: each month's orders
    are grouped under that month's segment, by group-by and by where."""
    found = sql(
        wh,
        """
        SELECT a.customer_id, a.month::text, a.segment, b.month::text, b.segment
        FROM dw.fact_customer_rfm a
        JOIN dw.fact_customer_rfm b ON b.customer_id = a.customer_id AND b.month > a.month
                                   AND b.segment <> a.segment
        WHERE a.month_revenue > 0 AND b.month_revenue > 0
        ORDER BY a.customer_id, a.month, b.month LIMIT 1
        """,
    )
    assert found, "the seeded data has a customer whose segment changed"
    cid, m1, seg1, m2, seg2 = found[0]
    data = gql(
        """query($c: Float!) { cube(timezone: "UTC", limit: 1000,
             where: {customers: {customerId: {equals: $c}}}) {
             sales { revenue orderCount orderedAt { month } } customers { rfmSegment } } }""",
        {"c": cid},
    )
    got = {
        (r["sales"]["orderedAt"]["month"][:10], r["customers"]["rfmSegment"]): (
            num(r["sales"]["revenue"]), r["sales"]["orderCount"])
        for r in data["cube"]
    }  # fmt: skip
    want = {
        (r[0], r[1]): (num(r[2]), r[3])
        for r in sql(
            wh,
            """
            SELECT date_trunc('month', s.ordered_at AT TIME ZONE 'UTC')::date::text, f.segment,
                   sum(s.net), count(DISTINCT s.order_id)
            FROM dw.fact_sales s
            LEFT JOIN dw.fact_customer_rfm f
              ON f.customer_id = s.customer_id
             AND f.month = date_trunc('month', s.ordered_at AT TIME ZONE 'UTC')::date
            WHERE s.customer_id = %s GROUP BY 1, 2
            """,
            (cid,),
        )
    }
    assert got == want
    assert (m1, seg1) in got and (m2, seg2) in got and seg1 != seg2
    # the customer's current segment is not what groups the older month
    for month, segment in ((m1, seg1), (m2, seg2)):
        rows = gql(
            """query($c: Float!, $s: String!) { cube(timezone: "UTC",
                 where: {customers: {customerId: {equals: $c}, rfmSegment: {equals: $s}}}) {
                 sales { orderCount orderedAt { month } } } }""",
            {"c": cid, "s": segment},
        )["cube"]
        months = {r["sales"]["orderedAt"]["month"][:10] for r in rows}
        assert month in months
        assert sum(r["sales"]["orderCount"] for r in rows) == sum(
            n for (mo, s), (_, n) in want.items() if s == segment
        )


def test_rfm_segment_is_listed_and_needs_a_fact_that_joins_the_snapshot(gql: Gql) -> None:
    meta = {c["name"]: c for c in gql("{ cubeMeta { name dimensions { name values } } }")[
        "cubeMeta"]}  # fmt: skip
    dim = next(d for d in meta["customers"]["dimensions"] if d["name"] == "rfmSegment")
    assert dim["values"] == list(rfm.default_rules().names)


def test_rfm_segment_without_an_order_month_is_bad_user_input(wh: Engine) -> None:
    with make_client(wh) as client:
        body = body_of(
            client.post(
                "/graphql",
                json={
                    "query": """{ cube {
            returns { refundAmount } customers { rfmSegment } } }"""
                },
            )
        )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    assert "does not join" in body["errors"][0]["message"]
