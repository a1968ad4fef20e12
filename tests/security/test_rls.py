"""Row-level security tested in SQL: whatever a resolver does, the database hands a
customer principal nothing but its own rows, and refuses writes a role may not make."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from db.engine import transaction
from db.errors import CdmsError, ForbiddenError
from tests.api.conftest import Shop
from tests.security.conftest import Parties

TABLES = [
    "customers",
    "products",
    "orders",
    "order_items",
    "order_status_history",
    "feedback",
    "returns",
    "support_tickets",
    "api_keys",
    "persisted_queries",
    "idempotency_keys",
    "rate_buckets",
    "feedback_edits",
]


@contextmanager
def as_principal(
    engine: Engine, role: str | None, customer_id: int | None = None, actor: str = "test"
) -> Iterator[Connection]:
    """A transaction run as the API runs one (rolled back at the end)."""
    with engine.connect() as conn, conn.begin() as trans:
        conn.execute(
            sa.text(
                "SELECT set_config('role', :db_role, true),"
                " set_config('cdms.role', :role, true),"
                " set_config('cdms.customer_id', :cid, true),"
                " set_config('cdms.actor', :actor, true)"
            ),
            {
                "db_role": "cdms_customer" if role == "customer" else "cdms_api",
                "role": role or "",
                "cid": "" if customer_id is None else str(customer_id),
                "actor": actor,
            },
        )
        yield conn
        trans.rollback()


def scalar(conn: Connection, sql: str, **params: object) -> object:
    return conn.execute(sa.text(sql), params).scalar()


def test_every_app_table_has_forced_rls(sec_engine: Engine) -> None:
    with sec_engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'app' AND c.relkind = 'r' ORDER BY 1"
            )
        ).all()
    assert sorted(r[0] for r in rows) == sorted(TABLES)
    assert all(r[1] and r[2] for r in rows), rows


def _owned(engine: Engine, customer: int) -> list[int]:
    """Ids of the customer's orders, read as the owner (other tests add orders)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT id FROM app.orders WHERE customer_id = :c ORDER BY id"), {"c": customer}
        )
        return [int(r[0]) for r in rows]


def test_customer_sees_only_its_own_rows(sec_engine: Engine, parties: Parties) -> None:
    a_orders, b_orders = _owned(sec_engine, parties.a), _owned(sec_engine, parties.b)
    assert set(parties.a_orders) <= set(a_orders) and b_orders
    with as_principal(sec_engine, "customer", parties.a) as conn:
        assert scalar(conn, "SELECT count(*) FROM app.customers") == 1
        assert scalar(conn, "SELECT count(*) FROM app.orders") == len(a_orders)
        # by id, another customer's order is simply not there
        assert (
            scalar(conn, "SELECT count(*) FROM app.orders WHERE customer_id = :b", b=parties.b) == 0
        )
        assert (
            scalar(conn, "SELECT count(*) FROM app.orders WHERE id = :id", id=parties.b_orders[0])
            == 0
        )
        lines = scalar(conn, "SELECT count(DISTINCT order_id) FROM app.order_items")
        assert lines == len(a_orders)
        history = scalar(
            conn,
            "SELECT array_agg(DISTINCT order_id ORDER BY order_id) FROM app.order_status_history",
        )
        assert history == a_orders
        assert (
            scalar(conn, "SELECT count(*) FROM app.feedback WHERE customer_id <> :a", a=parties.a)
            == 0
        )
        # products are visible to all
        assert scalar(conn, "SELECT count(*) FROM app.products") == 5
        # views run as the caller: the summary holds one customer
        assert scalar(conn, "SELECT array_agg(customer_id) FROM app.customer_summary") == [
            parties.a
        ]
    with as_principal(sec_engine, "customer", parties.b) as conn:
        assert scalar(conn, "SELECT count(*) FROM app.orders") == len(b_orders)


def test_other_roles_see_everything_and_no_role_sees_nothing(
    sec_engine: Engine, sec_shop: Shop
) -> None:
    with sec_engine.connect() as conn:
        total = scalar(conn, "SELECT count(*) FROM app.orders")
    assert total >= sum(len(v) for v in sec_shop.orders.values())
    for role in ("admin", "analyst", "service"):
        with as_principal(sec_engine, role) as conn:
            assert scalar(conn, "SELECT count(*) FROM app.orders") == total
            assert scalar(conn, "SELECT count(*) FROM app.customers") == len(sec_shop.customers)
    # cdms_api without cdms.role (a bug in the API) fails closed
    with as_principal(sec_engine, None) as conn:
        for table in TABLES[:8]:
            assert scalar(conn, f"SELECT count(*) FROM app.{table}") == 0, table
    # a customer role without a customer id sees nothing either
    with as_principal(sec_engine, "customer", None) as conn:
        assert scalar(conn, "SELECT count(*) FROM app.orders") == 0
        assert scalar(conn, "SELECT count(*) FROM app.customers") == 0
    # nor the customers' database role with a staff cdms.role
    with sec_engine.connect() as conn, conn.begin():
        conn.execute(
            sa.text(
                "SELECT set_config('role', 'cdms_customer', true),"
                " set_config('cdms.role', 'admin', true)"
            )
        )
        assert scalar(conn, "SELECT count(*) FROM app.orders") == 0


def _plan(conn: Connection, sql: str, **params: object) -> str:
    return "\n".join(str(r[0]) for r in conn.execute(sa.text("EXPLAIN " + sql), params))


def test_policies_stay_cheap(sec_engine: Engine, parties: Parties) -> None:
    """Policies read the settings once per statement (InitPlans), never per row, and a
    customer's policy is an index condition."""
    latest = "SELECT id FROM app.orders ORDER BY ordered_at DESC, id DESC LIMIT 10"
    with as_principal(sec_engine, "customer", parties.a) as conn:
        conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
        plan = _plan(conn, latest)
        assert "orders_customer_date_idx" in plan and "InitPlan" in plan, plan
        assert "current_setting" not in plan and "Filter" not in plan, plan
    with as_principal(sec_engine, "admin") as conn:
        # tiny test tables: without this the planner may prefer a scan, whatever the policy
        conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
        plan = _plan(conn, "SELECT id FROM app.orders WHERE customer_id = :c", c=parties.a)
        assert "orders_customer_date_idx" in plan and "InitPlan" in plan, plan
        assert "current_setting" not in plan, plan


def test_api_roles_cannot_read_keys_or_persisted_queries(sec_engine: Engine) -> None:
    for role, table in (("admin", "api_keys"), ("customer", "persisted_queries")):
        with (
            as_principal(sec_engine, role, 1) as conn,
            pytest.raises(sa.exc.ProgrammingError) as exc,
        ):
            conn.execute(sa.text(f"SELECT count(*) FROM app.{table}"))
        assert "permission denied" in str(exc.value)


def _place(conn: Connection, customer_id: int, product_id: int) -> int:
    return int(
        conn.execute(
            sa.text(
                "SELECT app.place_order(:c, jsonb_build_array(jsonb_build_object("
                "'product_id', CAST(:p AS bigint), 'quantity', 1)), 'web', 'card')"
            ),
            {"c": customer_id, "p": product_id},
        ).scalar_one()
    )


def test_place_order_only_for_oneself(sec_engine: Engine, sec_shop: Shop, parties: Parties) -> None:
    product = sec_shop.products[0]
    b_before = len(_owned(sec_engine, parties.b))
    with as_principal(sec_engine, "customer", parties.a, actor=f"customer:{parties.a}") as conn:
        oid = _place(conn, parties.a, product)
        row = conn.execute(
            sa.text("SELECT customer_id, created_by FROM app.orders WHERE id = :id"), {"id": oid}
        ).one()
        assert tuple(row) == (parties.a, f"customer:{parties.a}")
        changed_by = scalar(
            conn, "SELECT changed_by FROM app.order_status_history WHERE order_id = :id", id=oid
        )
        assert changed_by == f"customer:{parties.a}"
    with (
        as_principal(sec_engine, "customer", parties.a) as conn,
        pytest.raises(sa.exc.DBAPIError) as exc,
    ):
        _place(conn, parties.b, product)
    # the other customer is invisible: NOT_FOUND, and nothing was written
    assert exc.value.orig.sqlstate == "CD003"  # type: ignore[union-attr]
    assert len(_owned(sec_engine, parties.b)) == b_before
    # a service principal may order for anyone
    with as_principal(sec_engine, "service") as conn:
        assert _place(conn, parties.b, product) > 0


def test_customer_direct_inserts_for_others_are_refused(
    sec_engine: Engine, parties: Parties
) -> None:
    cases = [
        "INSERT INTO app.orders (customer_id, channel, payment_method) VALUES (:b, 'web', 'card')",
        "INSERT INTO app.support_tickets (customer_id, category, channel, subject)"
        " VALUES (:b, 'other', 'web', 'hi')",
        "INSERT INTO app.feedback (customer_id, rating) VALUES (:b, 5)",
    ]
    for sql in cases:
        with (
            as_principal(sec_engine, "customer", parties.a) as conn,
            pytest.raises(sa.exc.DBAPIError) as exc,
        ):
            conn.execute(sa.text(sql), {"b": parties.b})
        assert exc.value.orig.sqlstate == "42501", sql  # type: ignore[union-attr]
    # no update of a ticket at all, theirs or its own (0032: staff move tickets)
    with (
        as_principal(sec_engine, "customer", parties.a) as conn,
        pytest.raises(sa.exc.DBAPIError) as exc,
    ):
        conn.execute(
            sa.text("UPDATE app.support_tickets SET subject = 'x' WHERE customer_id = :b"),
            {"b": parties.b},
        )
    assert exc.value.orig.sqlstate == "42501"  # type: ignore[union-attr]
    with as_principal(sec_engine, "customer", parties.a) as conn:
        res = conn.execute(
            sa.text("DELETE FROM app.orders WHERE customer_id = :a"), {"a": parties.a}
        )
        assert res.rowcount == 0  # customers delete nothing, not even their own


def test_customer_may_cancel_but_not_advance_its_order(
    sec_engine: Engine, parties: Parties
) -> None:
    with sec_engine.connect() as conn:
        pending = scalar(
            conn,
            "SELECT min(id) FROM app.orders WHERE customer_id = :a AND status = 'pending'",
            a=parties.a,
        )
    with as_principal(sec_engine, "customer", parties.a) as conn:
        conn.execute(sa.text("SELECT app.set_order_status(:id, 'cancelled')"), {"id": pending})
        assert (
            scalar(conn, "SELECT status FROM app.orders WHERE id = :id", id=pending) == "cancelled"
        )
    with as_principal(sec_engine, "customer", parties.a) as conn, pytest.raises(CdmsError) as err:
        _mapped(conn, "SELECT app.set_order_status(:id, 'paid')", id=pending)
    assert err.value.code == "FORBIDDEN"


@pytest.mark.parametrize("role", ["customer", "service"])
def test_a_return_of_a_delivered_order_may_be_requested(
    sec_engine: Engine, parties: Parties, role: str
) -> None:
    """The return's trigger locks the bought line (FOR NO KEY UPDATE), which row-level
    security lets through only where an UPDATE policy does: a customer's own lines, and
    every line for the service role (which writes returns), may be locked, never changed."""
    with sec_engine.connect() as conn, conn.begin() as trans:
        order = parties.a_orders[0]
        for status in ("paid", "shipped", "delivered"):  # as the owner: legal steps
            conn.execute(
                sa.text("UPDATE app.orders SET status = :s WHERE id = :id"),
                {"s": status, "id": order},
            )
        conn.execute(
            sa.text(
                "SELECT set_config('role', :db_role, true),"
                " set_config('cdms.role', :role, true),"
                " set_config('cdms.customer_id', :cid, true)"
            ),
            {
                "db_role": "cdms_customer" if role == "customer" else "cdms_api",
                "role": role,
                "cid": str(parties.a) if role == "customer" else "",
            },
        )
        returned = scalar(conn, "SELECT app.request_return(:id, 1, 1, 'damaged')", id=order)
        assert scalar(conn, "SELECT status FROM app.returns WHERE id = :id", id=returned) == (
            "requested"
        )
        conn.execute(sa.text("SAVEPOINT change"))
        with pytest.raises(sa.exc.DBAPIError) as err:  # the policy's WITH CHECK refuses it
            conn.execute(
                sa.text("UPDATE app.order_items SET quantity = quantity WHERE order_id = :id"),
                {"id": order},
            )
        assert "row-level security" in str(err.value.orig), err.value.orig
        conn.execute(sa.text("ROLLBACK TO SAVEPOINT change"))
        trans.rollback()


def _mapped(conn: Connection, sql: str, **params: object) -> None:
    from db.errors import from_db_error

    try:
        conn.execute(sa.text(sql), params)
    except sa.exc.DBAPIError as exc:
        mapped = from_db_error(exc)
        assert mapped is not None, exc
        raise mapped from exc


def test_analyst_writes_nothing(sec_engine: Engine, sec_shop: Shop, parties: Parties) -> None:
    for sql in (
        "UPDATE app.products SET name = name WHERE false",
        "INSERT INTO app.feedback (customer_id, rating) VALUES (:a, 5)",
        "DELETE FROM app.orders WHERE false",
    ):
        with as_principal(sec_engine, "analyst") as conn, pytest.raises(ForbiddenError) as err:
            _mapped(conn, sql, a=parties.a)
        assert err.value.fields["role"] == "analyst"
    with as_principal(sec_engine, "analyst") as conn, pytest.raises(CdmsError):
        _mapped(
            conn,
            "SELECT app.place_order(:a, '[{\"product_id\": 1, \"quantity\": 1}]', 'web', 'card')",
            a=parties.a,
        )


def test_below_admin_products_only_move_stock(sec_engine: Engine, sec_shop: Shop) -> None:
    pid = sec_shop.products[1]
    for role in ("service", "customer"):
        with (
            as_principal(sec_engine, role, 1 if role == "customer" else None) as conn,
            pytest.raises(ForbiddenError),
        ):
            _mapped(conn, "UPDATE app.products SET unit_price = 0 WHERE id = :id", id=pid)
    with as_principal(sec_engine, "service") as conn:
        conn.execute(
            sa.text("UPDATE app.products SET stock = stock + 1 WHERE id = :id"), {"id": pid}
        )
    with as_principal(sec_engine, "admin") as conn:
        conn.execute(sa.text("UPDATE app.products SET unit_price = 1 WHERE id = :id"), {"id": pid})
        assert scalar(conn, "SELECT unit_price FROM app.products WHERE id = :id", id=pid) == 1


def test_owner_is_unchanged(sec_engine: Engine, sec_shop: Shop) -> None:
    """Seed, ETL and CLI run as the owner without cdms.role: every row, every write."""
    with transaction(sec_engine) as conn:
        conn.execute(sa.text("SET LOCAL cdms.role = ''"))
        assert scalar(conn, "SELECT count(*) FROM app.customers") == len(sec_shop.customers)
        conn.execute(sa.text("UPDATE app.products SET name = name"))


FORGE = [
    "INSERT INTO app.order_status_history (order_id, from_status, to_status, changed_by)"
    " VALUES (:o, 'shipped', 'delivered', 'forged')",
    "UPDATE app.order_status_history SET changed_by = 'forged' WHERE order_id = :o",
    "DELETE FROM app.order_status_history WHERE order_id = :o",
]


@pytest.mark.parametrize("role", ["customer", "service", "admin"])
def test_status_history_is_written_by_the_shops_triggers_only(
    sec_engine: Engine, parties: Parties, role: str
) -> None:
    """The API roles held INSERT, UPDATE and DELETE on the history: a customer could add a
    row to its own order's (``own_insert``: "delivered" on an order never shipped), service
    any order's, an admin rewrite or erase it. Only the triggers that log a status change
    write it now (SECURITY DEFINER, 0023); the API roles' statements are refused (42501)."""
    customer = parties.a if role == "customer" else None
    for sql in FORGE:
        with (
            as_principal(sec_engine, role, customer) as conn,
            pytest.raises(sa.exc.DBAPIError) as exc,
        ):
            conn.execute(sa.text(sql), {"o": parties.a_orders[0]})
        assert exc.value.orig.sqlstate == "42501", (role, sql)  # type: ignore[union-attr]


@pytest.mark.parametrize("role", ["customer", "service"])
def test_placing_and_changing_an_order_still_write_its_history(
    sec_engine: Engine, sec_shop: Shop, parties: Parties, role: str
) -> None:
    """The procedures, run as each API role, still log every status with its actor."""
    customer = parties.a if role == "customer" else None
    items = f'[{{"product_id": {sec_shop.products[1]}, "quantity": 1}}]'
    with as_principal(sec_engine, role, customer, actor=f"test:{role}") as conn:
        order = scalar(
            conn, "SELECT app.place_order(:a, :items, 'web', 'card')", a=parties.a, items=items
        )
        scalar(conn, "SELECT app.set_order_status(:o, 'cancelled')", o=order)
        rows = conn.execute(
            sa.text(
                "SELECT from_status, to_status, changed_by FROM app.order_status_history"
                " WHERE order_id = :o ORDER BY id"
            ),
            {"o": order},
        ).all()
    actor = f"test:{role}"
    assert [tuple(r) for r in rows] == [(None, "pending", actor), ("pending", "cancelled", actor)]


@pytest.mark.parametrize("role", ["customer", "service", "admin"])
def test_the_warehouse_delete_log_is_written_by_its_trigger_only(
    sec_engine: Engine, parties: Parties, role: str
) -> None:
    """Both API roles held INSERT on dw.etl_source_delete (for the trigger that logs
    deleted app rows): any of them could log a truncation of app.customers, and the next
    ETL run would discard the customers' SCD2 history and rebuild (or forget facts whose
    rows exist). Only the trigger writes it now (SECURITY DEFINER, 0024)."""
    customer = parties.a if role == "customer" else None
    for sql in (
        "INSERT INTO dw.etl_source_delete (source) VALUES ('customers')",
        "INSERT INTO dw.etl_source_delete (source, key_id) VALUES ('orders', :o)",
    ):
        with (
            as_principal(sec_engine, role, customer) as conn,
            pytest.raises(sa.exc.DBAPIError) as exc,
        ):
            conn.execute(sa.text(sql), {"o": parties.a_orders[0]})
        assert exc.value.orig.sqlstate == "42501", (role, sql)  # type: ignore[union-attr]


def test_an_admins_delete_is_still_logged_for_the_warehouse(
    sec_engine: Engine, parties: Parties
) -> None:
    order = parties.b_orders[-1]
    with as_principal(sec_engine, "admin") as conn:
        conn.execute(sa.text("DELETE FROM app.orders WHERE id = :o"), {"o": order})
        logged = scalar(
            conn,
            "SELECT count(*) FROM dw.etl_source_delete WHERE source = 'orders' AND key_id = :o",
            o=order,
        )
    assert logged == 1
