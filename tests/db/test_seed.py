"""The demo-data seed: invariants, determinism, planted relations, all-or-nothing, CLI."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from db.config import to_libpq_url
from db.errors import BadUserInputError, ConflictError
from db.seed import SEEDED_TABLES, SeedCheckError, seed
from db.seed import load as seed_load
from db.seed.copy import NULL, Table
from tests.cli import run_cdms

END = dt.date(2026, 6, 1)  # fixed, so that two runs on different days still agree
CUSTOMERS, ORDERS, SEED = 300, 4_000, 11

Conn = psycopg.Connection[tuple[Any, ...]]


def rows(url: str, query: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(to_libpq_url(url)) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


def value(url: str, query: str) -> Any:
    return rows(url, query)[0][0]


def table_counts(url: str) -> dict[str, int]:
    return {t: int(value(url, f"SELECT count(*) FROM app.{t}")) for t in SEEDED_TABLES}


def checksums(url: str) -> dict[str, str]:
    keys = {"order_items": "order_id, line_no"}
    return {
        t: str(value(url, f"SELECT md5(string_agg(t::text, ',' ORDER BY {keys.get(t, 'id')})) "
                          f"FROM app.{t} t"))
        for t in SEEDED_TABLES
    }  # fmt: skip


@pytest.fixture(scope="module")
def seeded(clone_database: Callable[[str], str]) -> Iterator[tuple[str, dict[str, int]]]:
    url = clone_database("seeded")
    counts = seed(url, CUSTOMERS, ORDERS, SEED, end=END)
    yield url, counts


# --- what a seed writes ---------------------------------------------------------------------


def test_seed_returns_the_rows_it_wrote(seeded: tuple[str, dict[str, int]]) -> None:
    url, counts = seeded
    assert counts == table_counts(url)
    assert counts["customers"] == CUSTOMERS
    assert counts["orders"] == ORDERS
    # 1-6 lines per order, every table gets rows
    assert ORDERS < counts["order_items"] <= 6 * ORDERS
    assert all(n > 0 for n in counts.values())


# Each query returns the rows that break one invariant; every one must come back empty.
INVARIANTS = {
    "order totals are the sums of their lines": """
        SELECT o.id FROM app.orders o
        JOIN LATERAL (SELECT sum(quantity) AS q, sum(quantity * unit_price) AS s,
                             sum(discount) AS d
                      FROM app.order_items i WHERE i.order_id = o.id) i ON true
        WHERE (o.item_count, o.subtotal, o.discount_total) IS DISTINCT FROM (i.q, i.s, i.d)
           OR o.total_amount <> o.subtotal - o.discount_total""",
    "line totals are net of discount": """
        SELECT order_id FROM app.order_items
        WHERE line_total <> quantity * unit_price - discount OR discount > quantity * unit_price""",
    "stock is not negative": "SELECT id FROM app.products WHERE stock < 0",
    "timestamps follow the lifecycle": """
        SELECT id FROM app.orders
        WHERE paid_at < ordered_at OR shipped_at < paid_at OR delivered_at < shipped_at
           OR cancelled_at < ordered_at OR cancelled_at < paid_at OR returned_at < delivered_at
           OR (shipped_at IS NOT NULL AND paid_at IS NULL)
           OR (delivered_at IS NOT NULL AND shipped_at IS NULL)""",
    "status agrees with timestamps": """
        SELECT id FROM app.orders
        WHERE (status = 'pending' AND num_nonnulls(paid_at, shipped_at, delivered_at,
                                                   cancelled_at, returned_at) > 0)
           OR (status = 'paid' AND (paid_at IS NULL OR num_nonnulls(shipped_at, cancelled_at) > 0))
           OR (status = 'shipped' AND (shipped_at IS NULL OR delivered_at IS NOT NULL))
           OR (status = 'delivered' AND (delivered_at IS NULL OR returned_at IS NOT NULL))
           OR (status = 'cancelled' AND (cancelled_at IS NULL OR shipped_at IS NOT NULL))
           OR (status = 'returned' AND returned_at IS NULL)""",
    "history starts with NULL -> pending at ordered_at": """
        SELECT o.id FROM app.orders o
        WHERE NOT EXISTS (SELECT 1 FROM app.order_status_history h
                          WHERE h.order_id = o.id AND h.from_status IS NULL
                            AND h.to_status = 'pending' AND h.changed_at = o.ordered_at)""",
    "history has one row per step and ends in the status": """
        SELECT o.id FROM app.orders o
        JOIN LATERAL (SELECT count(*) AS n,
                             (array_agg(to_status ORDER BY changed_at, id))[count(*)] AS last
                      FROM app.order_status_history h WHERE h.order_id = o.id) h ON true
        WHERE h.last <> o.status
           OR h.n <> 1 + num_nonnulls(o.paid_at, o.shipped_at, o.delivered_at,
                                      o.cancelled_at, o.returned_at)""",
    "each history step links to the previous one": """
        SELECT id FROM (
            SELECT id, from_status,
                   lag(to_status) OVER (PARTITION BY order_id ORDER BY changed_at, id) AS prev
            FROM app.order_status_history) h
        WHERE prev IS NOT NULL AND from_status IS DISTINCT FROM prev""",
    "history is written by 'seed'": """
        SELECT id FROM app.order_status_history WHERE changed_by IS DISTINCT FROM 'seed'""",
    "returns never exceed the bought quantity": """
        SELECT r.order_id, r.line_no FROM app.returns r
        JOIN app.order_items i USING (order_id, line_no)
        WHERE r.status <> 'rejected'
        GROUP BY r.order_id, r.line_no, i.quantity HAVING sum(r.quantity) > i.quantity""",
    "returns only on delivered or returned orders": """
        SELECT r.id FROM app.returns r JOIN app.orders o ON o.id = r.order_id
        WHERE o.status NOT IN ('delivered', 'returned') OR r.requested_at < o.delivered_at
           OR r.customer_id <> o.customer_id""",
    "approved refunds are pro rata of the net line price": """
        SELECT r.id FROM app.returns r JOIN app.order_items i USING (order_id, line_no)
        WHERE (r.status = 'approved'
               AND r.refund_amount <> round(i.line_total * r.quantity / i.quantity, 2))
           OR (r.status <> 'approved' AND r.refund_amount IS NOT NULL)
           OR (r.status = 'requested') <> (r.decided_at IS NULL)""",
    "an order is returned exactly when all its units were returned": """
        SELECT o.id FROM app.orders o
        WHERE (o.status = 'returned') <> (o.item_count = (
                SELECT coalesce(sum(quantity), 0) FROM app.returns r
                WHERE r.order_id = o.id AND r.status = 'approved'))""",
    "ticket times agree with the status": """
        SELECT id FROM app.support_tickets
        WHERE (status IN ('resolved', 'closed')
               AND (resolved_at IS NULL OR resolved_at < opened_at))
           OR (status IN ('open', 'in_progress') AND resolved_at IS NOT NULL)
           OR (satisfaction IS NOT NULL AND status NOT IN ('resolved', 'closed'))""",
    "a ticket's order is the customer's": """
        SELECT t.id FROM app.support_tickets t JOIN app.orders o ON o.id = t.order_id
        WHERE o.customer_id <> t.customer_id""",
    "feedback is about the customer's own order and product": """
        SELECT f.id FROM app.feedback f JOIN app.orders o ON o.id = f.order_id
        WHERE o.customer_id <> f.customer_id OR f.created_at < o.delivered_at
           OR NOT EXISTS (SELECT 1 FROM app.order_items i
                          WHERE i.order_id = f.order_id AND i.product_id = f.product_id)""",
    "customers sign up before ordering": """
        SELECT o.id FROM app.orders o JOIN app.customers c ON c.id = o.customer_id
        WHERE o.ordered_at < c.signup_at""",
    "customers are adults": """
        SELECT id FROM app.customers
        WHERE birth_date > (signup_at - interval '18 years')::date
           OR birth_date < (signup_at - interval '86 years')::date""",
    "no dangling references": """
        SELECT i.order_id FROM app.order_items i
        LEFT JOIN app.orders o ON o.id = i.order_id LEFT JOIN app.products p ON p.id = i.product_id
        WHERE o.id IS NULL OR p.id IS NULL
        UNION ALL
        SELECT o.id FROM app.orders o LEFT JOIN app.customers c ON c.id = o.customer_id
        WHERE c.id IS NULL""",
    "history is within the history window": f"""
        SELECT id FROM app.order_status_history
        WHERE changed_at > DATE '{END.isoformat()}'""",
}


@pytest.mark.parametrize("name", list(INVARIANTS))
def test_seeded_data_holds_invariant(seeded: tuple[str, dict[str, int]], name: str) -> None:
    url, _ = seeded
    assert rows(url, INVARIANTS[name]) == []


def test_identity_sequences_continue_after_the_seed(seeded: tuple[str, dict[str, int]]) -> None:
    url, counts = seeded
    with psycopg.connect(to_libpq_url(url)) as conn:
        customer_id = conn.execute(
            "INSERT INTO app.customers (email, first_name, last_name, country, region, city) "
            "VALUES ('new.one@example.com', 'New', 'One', 'Germany', 'Berlin', 'Berlin') "
            "RETURNING id"
        ).fetchone()
        assert customer_id == (CUSTOMERS + 1,)
        product = conn.execute(
            "SELECT id FROM app.products WHERE stock > 0 AND active ORDER BY id LIMIT 1"
        ).fetchone()
        assert product is not None
        items = json.dumps([{"product_id": product[0], "quantity": 1}])
        order = conn.execute(
            "SELECT app.place_order(%s, %s::jsonb, 'web', 'card')", (customer_id[0], items)
        ).fetchone()
        assert order == (ORDERS + 1,)
        history = conn.execute(
            "SELECT id FROM app.order_status_history WHERE order_id = %s", (order[0],)
        ).fetchall()
        assert history == [(counts["order_status_history"] + 1,)]
        conn.rollback()


def indexes(url: str) -> list[tuple[Any, ...]]:
    return rows(
        url, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'app' ORDER BY 1"
    )


def test_indexes_dropped_for_the_load_are_all_back(
    seeded: tuple[str, dict[str, int]], database_url: str
) -> None:
    url, _ = seeded
    assert len(indexes(url)) > 20
    assert indexes(url) == indexes(database_url)  # the same migrations, never seeded


def test_the_most_recent_orders_are_still_in_progress(
    seeded: tuple[str, dict[str, int]],
) -> None:
    url, _ = seeded
    statuses = dict(rows(url, "SELECT status, count(*) FROM app.orders GROUP BY status"))
    assert set(statuses) == {"pending", "paid", "shipped", "delivered", "cancelled", "returned"}
    assert statuses["delivered"] > 0.75 * ORDERS
    last = value(url, "SELECT max(ordered_at) FROM app.orders WHERE status = 'delivered'")
    newest = value(url, "SELECT max(ordered_at) FROM app.orders")
    assert value(url, "SELECT status FROM app.orders ORDER BY ordered_at DESC LIMIT 1") in {
        "pending", "paid", "shipped", "delivered", "cancelled"
    }  # fmt: skip
    assert last <= newest
    in_progress = value(
        url,
        "SELECT min(ordered_at) FROM app.orders WHERE status IN ('pending', 'paid', 'shipped')",
    )
    assert in_progress > dt.datetime.combine(END, dt.time(), dt.UTC) - dt.timedelta(days=15)


def test_emails_are_unique_and_plausible(seeded: tuple[str, dict[str, int]]) -> None:
    url, _ = seeded
    assert value(url, "SELECT count(DISTINCT lower(email)) FROM app.customers") == CUSTOMERS
    assert value(url, "SELECT count(*) FROM app.customers WHERE email !~ '^[a-z0-9._]+@'") == 0


# --- realism and planted relations -------------------------------------------------------------


def shares(url: str, query: str) -> dict[str, float]:
    return {str(k): float(v) for k, v in rows(url, query)}


def test_segments_channels_and_payments_have_realistic_shares(
    seeded: tuple[str, dict[str, int]],
) -> None:
    url, _ = seeded
    seg = shares(url, "SELECT segment, avg(1.0) * count(*) / sum(count(*)) OVER () "
                      "FROM app.customers GROUP BY segment")  # fmt: skip
    assert 0.5 < seg["consumer"] < 0.7 and 0.17 < seg["corporate"] < 0.33
    assert 0.08 < seg["home_office"] < 0.22
    assert value(url, "SELECT count(DISTINCT country) FROM app.customers") >= 8
    assert value(url, "SELECT count(DISTINCT category) FROM app.products") >= 8
    ch = shares(url, "SELECT channel, count(*)::float / sum(count(*)) OVER () "
                     "FROM app.orders GROUP BY channel")  # fmt: skip
    assert set(ch) == {"web", "mobile", "store", "phone", "marketplace"}
    assert ch["web"] == max(ch.values())
    qty = shares(url, "SELECT quantity::text, count(*)::float / sum(count(*)) OVER () "
                      "FROM app.order_items GROUP BY quantity")  # fmt: skip
    assert qty["1"] + qty["2"] > 0.8


def test_november_and_december_are_the_peak(seeded: tuple[str, dict[str, int]]) -> None:
    url, _ = seeded
    per_day = shares(
        url,
        """SELECT CASE WHEN extract(month FROM ordered_at) IN (11, 12) THEN 'peak' ELSE 'rest' END,
                  count(*)::float / count(DISTINCT ordered_at::date)
           FROM app.orders GROUP BY 1""",
    )
    assert per_day["peak"] > 1.3 * per_day["rest"]


def test_cancellations_depend_on_payment_first_order_and_channel(
    seeded: tuple[str, dict[str, int]],
) -> None:
    url, _ = seeded
    rate = "avg((status = 'cancelled')::int)::float"
    by_payment = shares(url, f"SELECT payment_method, {rate} FROM app.orders GROUP BY 1")
    assert by_payment["cash_on_delivery"] > 2 * by_payment["card"]
    assert by_payment["bank_transfer"] > 2 * by_payment["card"]
    by_first = shares(
        url,
        f"""SELECT k, {rate}
            FROM (SELECT status,
                         CASE WHEN row_number() OVER (PARTITION BY customer_id
                                                      ORDER BY ordered_at, id) = 1
                              THEN 'first' ELSE 'repeat' END AS k
                  FROM app.orders) o
            GROUP BY k""",
    )
    assert by_first["first"] > 1.5 * by_first["repeat"]
    by_channel = shares(url, f"SELECT channel, {rate} FROM app.orders GROUP BY 1")
    assert by_channel["marketplace"] > 1.5 * by_channel["web"]


LINE_RETURNED = """
    SELECT {key}, avg((r.order_id IS NOT NULL)::int)::float
    FROM app.order_items i
    JOIN app.orders o ON o.id = i.order_id
    JOIN app.products p ON p.id = i.product_id
    LEFT JOIN app.returns r ON r.order_id = i.order_id AND r.line_no = i.line_no
    WHERE o.delivered_at IS NOT NULL
    GROUP BY 1"""


def test_returns_depend_on_category_and_late_delivery(seeded: tuple[str, dict[str, int]]) -> None:
    url, _ = seeded
    by_cat = shares(
        url,
        LINE_RETURNED.format(
            key="CASE WHEN p.category IN ('Apparel', 'Shoes') THEN 'fashion' ELSE 'other' END"
        ),
    )
    assert by_cat["fashion"] > 2 * by_cat["other"]
    by_late = shares(
        url,
        LINE_RETURNED.format(
            key="CASE WHEN o.delivered_at - o.shipped_at > interval '5 days' "
            "THEN 'late' ELSE 'on_time' END"
        ),
    )
    assert by_late["late"] > 1.5 * by_late["on_time"]


def test_prior_returns_predict_returns(seeded: tuple[str, dict[str, int]]) -> None:
    url, _ = seeded
    by_prior = shares(
        url,
        """WITH o AS (
               SELECT o.id, o.customer_id, o.ordered_at,
                      EXISTS (SELECT 1 FROM app.returns r WHERE r.order_id = o.id) AS returned
               FROM app.orders o WHERE o.delivered_at IS NOT NULL),
           p AS (
               SELECT returned,
                      coalesce(bool_or(returned) OVER (
                          PARTITION BY customer_id ORDER BY ordered_at, id
                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), false) AS prior
               FROM o)
           SELECT CASE WHEN prior THEN 'prior' ELSE 'none' END, avg(returned::int)::float
           FROM p GROUP BY 1""",
    )
    assert by_prior["prior"] > 1.5 * by_prior["none"]


def test_late_deliveries_bring_complaints_and_lower_ratings(
    seeded: tuple[str, dict[str, int]],
) -> None:
    url, _ = seeded
    result = {
        k: (float(c), float(r))
        for k, c, r in rows(
            url,
            """SELECT CASE WHEN o.delivered_at - o.shipped_at > interval '5 days'
                           THEN 'late' ELSE 'on_time' END,
                      avg((f.kind = 'complaint')::int), avg(f.rating)
               FROM app.feedback f JOIN app.orders o ON o.id = f.order_id GROUP BY 1""",
        )
    }
    assert result["late"][0] > 2 * result["on_time"][0]
    assert result["late"][1] < result["on_time"][1] - 0.5


def test_ticket_outcome_depends_on_priority_category_and_channel(
    seeded: tuple[str, dict[str, int]],
) -> None:
    url, _ = seeded
    resolved = "avg((status IN ('resolved', 'closed'))::int)::float"
    old = "opened_at < DATE '2026-05-01'"  # old enough to have been resolved if it ever would
    by_category = shares(url, f"SELECT category, {resolved} FROM app.support_tickets "
                              f"WHERE {old} GROUP BY 1")  # fmt: skip
    assert by_category["other"] < by_category["return"] - 0.2
    by_channel = shares(url, f"SELECT channel, {resolved} FROM app.support_tickets "
                             f"WHERE {old} GROUP BY 1")  # fmt: skip
    assert by_channel["phone"] > by_channel["email"] + 0.15
    by_priority = shares(url, f"SELECT priority, {resolved} FROM app.support_tickets "
                              f"WHERE {old} GROUP BY 1")  # fmt: skip
    assert by_priority["urgent"] > by_priority["low"] + 0.15


def test_order_value_depends_on_segment(seeded: tuple[str, dict[str, int]]) -> None:
    url, _ = seeded
    by_segment = shares(
        url,
        "SELECT c.segment, avg(o.total_amount)::float FROM app.orders o "
        "JOIN app.customers c ON c.id = o.customer_id GROUP BY 1",
    )
    assert by_segment["corporate"] > 1.5 * by_segment["consumer"]
    by_channel = shares(url, "SELECT channel, avg(item_count)::float FROM app.orders GROUP BY 1")
    assert by_channel["store"] < by_channel["web"]


def test_lapsing_customers_order_less_and_less_then_stop(
    seeded: tuple[str, dict[str, int]],
) -> None:
    """The planted churn: before they stop, a lapsing customer's gaps between orders grow."""
    url, _ = seeded
    by_stopped = shares(
        url,
        """
        WITH g AS (
            SELECT customer_id, ordered_at,
                   extract(epoch FROM ordered_at - lag(ordered_at) OVER w) AS gap,
                   row_number() OVER w AS k, count(*) OVER (PARTITION BY customer_id) AS n,
                   max(ordered_at) OVER (PARTITION BY customer_id) AS last_at
            FROM app.orders WINDOW w AS (PARTITION BY customer_id ORDER BY ordered_at)
        ), c AS (
            SELECT customer_id, bool_or(last_at < '2026-06-01'::date - 180) AS stopped,
                   avg(gap) FILTER (WHERE k > n - 2)
                   / nullif(avg(gap) FILTER (WHERE k > 1 AND k <= n - 2), 0) AS growth
            FROM g WHERE n >= 5 GROUP BY 1
        )
        SELECT stopped::text, percentile_cont(0.5) WITHIN GROUP (ORDER BY growth)
        FROM c GROUP BY 1
        """,
    )
    assert by_stopped["true"] > 1.15 * by_stopped["false"]


# --- determinism ---------------------------------------------------------------------------------


def test_same_seed_gives_identical_data_and_another_seed_does_not(
    fresh_database: Callable[[], str],
) -> None:
    first, second, other = fresh_database(), fresh_database(), fresh_database()
    seed(first, 80, 500, 3, end=END)
    seed(second, 80, 500, 3, end=END)
    seed(other, 80, 500, 4, end=END)
    a, b, c = checksums(first), checksums(second), checksums(other)
    assert a == b
    assert all(a[t] != c[t] for t in SEEDED_TABLES)


# --- refusals and all-or-nothing ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"customers": 0}, "customers"),
        ({"customers": -5}, "customers"),
        ({"orders": 0}, "orders"),
        ({"seed": -1}, "seed"),
        ({"products": 0}, "products"),
        ({"years": 0}, "years"),
        ({"end": dt.date(1950, 1, 1)}, "end"),
        # rows dated after now: the warehouse's change windows end at the run's time, so the
        # first `cdms etl run` failed (MISSING_DIMENSION) and --full could not mend it
        ({"end": dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)}, "end"),
        ({"end": dt.date(2099, 1, 1)}, "end"),
    ],
)
def test_bad_sizes_are_refused_and_write_nothing(
    database_url: str, kwargs: dict[str, Any], field: str
) -> None:
    before = table_counts(database_url)
    args: dict[str, Any] = {"customers": 10, "orders": 10, "seed": 1, **kwargs}
    with pytest.raises(BadUserInputError) as err:
        seed(database_url, **args)
    assert err.value.fields["field"] == field
    assert table_counts(database_url) == before


def test_non_empty_database_is_refused_unless_reset(fresh_database: Callable[[], str]) -> None:
    url = fresh_database()
    seed(url, 30, 200, 1, end=END)
    before = checksums(url)
    with pytest.raises(ConflictError) as err:
        seed(url, 30, 200, 2, end=END)
    assert "--reset" in err.value.message
    assert checksums(url) == before
    # what the daily limits count goes with the rows it counted: the ids start again at 1,
    # and customer 5's edits must not count against the new customer 5 (the hostile review)
    with psycopg.connect(to_libpq_url(url), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO app.feedback_edits (customer_id, edited_at)"
            " SELECT 5, now() FROM generate_series(1, 20)"
        )
    counts = seed(url, 40, 300, 2, end=END, reset=True)
    assert counts == table_counts(url)
    assert counts["customers"] == 40 and counts["orders"] == 300
    assert value(url, "SELECT min(id) FROM app.orders") == 1  # identities restarted
    assert value(url, "SELECT count(*) FROM app.feedback_edits") == 0


def test_a_failure_in_the_last_table_leaves_nothing_written(
    fresh_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = fresh_database()
    real = seed_load.write_table

    def write(conn: Conn, table: Table, *args: Any, **kwargs: Any) -> int:
        if table.name == "app.support_tickets":  # the last table: an impossible priority
            table = table.with_text("priority", ["someday", *table.text("priority")[1:]])
        return real(conn, table, *args, **kwargs)

    monkeypatch.setattr(seed_load, "write_table", write)
    before = indexes(url)
    with pytest.raises(BadUserInputError):
        seed(url, 30, 200, 1, end=END)
    assert set(table_counts(url).values()) == {0}
    assert indexes(url) == before


def _bump(value: str) -> str:
    return str(int(value) + 1)


# (table, column, how the first row is spoiled, the checks that must catch it): values that
# no constraint rejects, so only checks.sql stands between them and a commit
SPOILED = [
    ("app.orders", "item_count", _bump, {"order totals match their lines"}),
    (
        "app.order_status_history",
        "to_status",
        lambda v: "paid",
        {
            "each history step happens at the order's timestamp for it, from its one legal "
            "predecessor",
            "history has exactly one step per status the order reached",
        },
    ),
    (
        "app.order_status_history",
        "from_status",
        lambda v: "paid",
        {
            "each history step happens at the order's timestamp for it, from its one legal "
            "predecessor"
        },
    ),
    (
        "app.support_tickets",
        "customer_id",
        lambda v: "999999",
        {
            "every reference points at an existing row",
            "a ticket's order belongs to the ticket's customer",
        },
    ),
]


@pytest.mark.parametrize(("name", "column", "spoil", "caught"), SPOILED)
def test_an_invariant_violation_is_caught_and_rolled_back(
    fresh_database: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    column: str,
    spoil: Callable[[str], str],
    caught: set[str],
) -> None:
    url = fresh_database()
    real = seed_load.write_table

    def write(conn: Conn, table: Table, *args: Any, **kwargs: Any) -> int:
        if table.name == name:
            values = table.text(column)
            # a ticket about an order, so that both of its references can disagree
            orders = table.text("order_id") if name == "app.support_tickets" else []
            k = next((i for i, v in enumerate(orders) if v != NULL), 0)
            table = table.with_text(column, [*values[:k], spoil(values[k]), *values[k + 1 :]])
        return real(conn, table, *args, **kwargs)

    monkeypatch.setattr(seed_load, "write_table", write)
    with pytest.raises(SeedCheckError) as err:
        seed(url, 30, 200, 1, end=END)
    assert set(err.value.fields["violations"]) == caught
    assert err.value.code == "SEED_CHECK"
    assert set(table_counts(url).values()) == {0}


def test_without_superuser_user_triggers_are_switched_off_and_back_on(
    fresh_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = fresh_database()
    monkeypatch.setattr(seed_load, "_is_superuser", lambda conn: False)
    counts = seed(url, 30, 200, 1, end=END)
    assert counts == table_counts(url)
    disabled = rows(
        url,
        """SELECT c.relname, t.tgname FROM pg_trigger t
           JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'app' AND NOT t.tgisinternal AND t.tgenabled <> 'O'""",
    )
    assert disabled == []
    # the triggers did not run during the load: one history row per step, not two
    assert counts["order_status_history"] == value(
        url,
        "SELECT sum(1 + num_nonnulls(paid_at, shipped_at, delivered_at, cancelled_at,"
        " returned_at)) FROM app.orders",
    )


# --- serve's start-up step and the CLI ----------------------------------------------------------


def test_startup_step_seeds_an_empty_database_once(fresh_database: Callable[[], str]) -> None:
    # the step itself: prepare() also runs the ETL and model training, not this area's
    from api.cli.seed import seed_demo_if_empty
    from api.settings import Settings

    url = fresh_database()
    settings = Settings.from_env().model_copy(
        update={"demo_customers": 40, "demo_orders": 250, "demo_seed": 5}
    )
    seed_demo_if_empty(url, settings)
    first = checksums(url)
    assert table_counts(url)["customers"] == 40 and table_counts(url)["orders"] == 250
    seed_demo_if_empty(url, settings)  # a restart: nothing changes
    assert checksums(url) == first


def test_startup_step_carries_on_when_other_tables_hold_data(
    fresh_database: Callable[[], str],
) -> None:
    from api.cli.seed import seed_demo_if_empty
    from api.settings import Settings

    url = fresh_database()
    with psycopg.connect(to_libpq_url(url)) as conn:
        conn.execute(
            "INSERT INTO app.products (sku, name, category, subcategory, brand, unit_price, cost)"
            " VALUES ('KEEP-1', 'Kept', 'Books', 'Fiction', 'Own', 10, 5)"
        )
    settings = Settings.from_env().model_copy(update={"demo_customers": 10, "demo_orders": 20})
    seed_demo_if_empty(url, settings)  # refused with CONFLICT inside, reported, not raised
    counts = table_counts(url)
    assert counts["products"] == 1 and counts["customers"] == 0


cdms = run_cdms


@pytest.fixture
def seed_env(cli_env: dict[str, str], fresh_database: Callable[[], str]) -> dict[str, str]:
    return {**cli_env, "DATABASE_URL": fresh_database(), "COLUMNS": "120"}


@pytest.mark.parametrize(
    ("args", "code", "exit_code"),
    [
        (["--customers", "0"], "BAD_USER_INPUT", 1),
        (["--customers", "abc"], "USAGE", 2),
        (["--end", "yesterday"], "USAGE", 2),
        (["--end", "2099-01-01"], "BAD_USER_INPUT", 1),
    ],
)
def test_cli_refuses_bad_input_in_one_line(
    seed_env: dict[str, str], args: list[str], code: str, exit_code: int
) -> None:
    done = cdms(seed_env, "seed", *args)
    assert done.returncode == exit_code
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error[{code}]: "), done.stderr
    assert set(table_counts(seed_env["DATABASE_URL"]).values()) == {0}


def test_cli_seeds_refuses_a_second_seed_and_resets(seed_env: dict[str, str]) -> None:
    url = seed_env["DATABASE_URL"]
    done = cdms(seed_env, "seed", "--customers", "50", "--orders", "300", "--seed", "9",
                "--end", "2026-06-01")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "app.order_items" in done.stdout and "seeded in" in done.stdout
    assert table_counts(url)["orders"] == 300
    again = cdms(seed_env, "seed", "--customers", "50", "--orders", "300")
    assert again.returncode == 1
    assert again.stderr.startswith("error[CONFLICT]: ")
    assert again.stdout.strip() == ""  # refused before any progress was drawn
    assert table_counts(url)["orders"] == 300
    reset = cdms(seed_env, "seed", "--customers", "20", "--orders", "150", "--reset")
    assert reset.returncode == 0, reset.stderr
    counts = table_counts(url)
    assert counts["customers"] == 20 and counts["orders"] == 150
