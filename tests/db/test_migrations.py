"""Migrations: idempotent, all-or-nothing, forward-only but for the few that say how to go
back (0023)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from db.config import to_libpq_url
from db.migrate import current_revision, downgrade, head_revision, upgrade


def test_upgrade_reaches_head_and_creates_the_three_schemas(database_url: str) -> None:
    assert current_revision(database_url) == head_revision()
    with psycopg.connect(to_libpq_url(database_url)) as conn:
        schemas = {
            r[0]
            for r in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname IN ('app','dw','ml')"
            )
        }
    assert schemas == {"app", "dw", "ml"}


def test_upgrade_twice_is_a_no_op(fresh_database: Callable[[], str]) -> None:
    url = fresh_database()
    before, after = upgrade(url)
    assert before == after == head_revision()

    def catalog() -> list[tuple[object, ...]]:
        with psycopg.connect(to_libpq_url(url)) as conn:
            return conn.execute(
                "SELECT n.nspname, c.relname, c.relkind FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname IN ('app','dw','ml') ORDER BY 1, 2"
            ).fetchall()

    first = catalog()
    upgrade(url)
    assert catalog() == first
    assert len(first) > 20


def test_a_failing_revision_leaves_the_database_at_the_previous_one(
    fresh_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each revision is one transaction: a broken SQL file rolls back entirely."""
    from db.migrations import sqlfile

    url = fresh_database()
    with psycopg.connect(to_libpq_url(url), autocommit=True) as conn:
        conn.execute("DROP SCHEMA app CASCADE; DROP SCHEMA dw CASCADE; DROP SCHEMA ml CASCADE")
        conn.execute("DELETE FROM alembic_version")
    original = sqlfile.run_sql_file

    def broken(name: str, **kwargs: Any) -> None:
        original(name, **kwargs)
        if name.startswith("0002"):
            raise RuntimeError("boom after applying 0002")

    # alembic loads the revision modules afresh, so they pick up the patched function
    monkeypatch.setattr(sqlfile, "run_sql_file", broken)
    with pytest.raises(RuntimeError, match="boom"):
        upgrade(url)
    assert current_revision(url) == "0001_schemas"
    with psycopg.connect(to_libpq_url(url)) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'app'").fetchone()
    assert tables == (0,)


def _migrated_to(fresh_database: Callable[[], str], revision: str) -> str:
    """A database migrated from scratch (empty schemas, no revision) to ``revision``."""
    url = fresh_database()
    with psycopg.connect(to_libpq_url(url), autocommit=True) as conn:
        conn.execute("DROP SCHEMA app CASCADE; DROP SCHEMA dw CASCADE; DROP SCHEMA ml CASCADE")
        conn.execute("DELETE FROM alembic_version")
    upgrade(url, revision)
    return url


def _back_and_forward(
    url: str, revision: str, state: Callable[[str], Any], before: Any, head: Any
) -> None:
    """``url``, at head with ``state`` ``head``, downgraded to ``revision`` is in the state
    ``before`` (a database migrated to it from scratch); upgraded again, in ``head``'s."""
    assert downgrade(url, revision)[1] == revision
    assert state(url) == before
    upgrade(url)
    assert current_revision(url) == head_revision()
    assert state(url) == head


def _trigger_rights(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Who may do what to the tables only triggers should write (the order status history,
    the warehouse's delete log), and as whom those triggers run."""
    with psycopg.connect(to_libpq_url(url)) as conn:

        def rows(sql: str) -> list[tuple[object, ...]]:
            return conn.execute(sql).fetchall()

        return {
            "tables": rows(
                "SELECT c.oid::regclass::text, a.grantee::regrole::text, a.privilege_type"
                " FROM pg_class AS c, aclexplode(c.relacl) AS a WHERE c.oid IN"
                " ('app.order_status_history'::regclass, 'dw.etl_source_delete'::regclass)"
                " ORDER BY 1, 2, 3"
            ),
            "schemas": rows(
                "SELECT n.nspname::text, a.grantee::regrole::text, a.privilege_type"
                " FROM pg_namespace AS n, aclexplode(n.nspacl) AS a"
                " WHERE n.nspname IN ('app', 'dw') ORDER BY 1, 2, 3"
            ),
            "functions": rows(
                "SELECT oid::regproc::text, prosecdef, proconfig, proowner::regrole::text"
                " FROM pg_proc WHERE oid IN ('app.orders_log_initial_status'::regproc,"
                " 'app.orders_log_status_change'::regproc, 'dw.capture_delete'::regproc)"
                " ORDER BY 1"
            ),
            "policies": rows(
                "SELECT policyname, cmd, roles::text[] FROM pg_policies"
                " WHERE schemaname = 'app' AND tablename = 'order_status_history' ORDER BY 1"
            ),
        }


def test_0023_and_0024_go_back_as_they_were_and_forward_again(
    fresh_database: Callable[[], str],
) -> None:
    """0023 and 0024 (the status history and the warehouse's delete log written by their
    triggers only) have downgrades: a database taken back to 0023, then 0022, is what those
    made (compared with one migrated to them from scratch); upgraded again, what head makes."""
    at_head = fresh_database()
    head = _trigger_rights(at_head)
    with psycopg.connect(to_libpq_url(at_head)) as conn:
        me = conn.execute("SELECT current_user::text").fetchone()
    assert me is not None
    assert [f[1:] for f in head["functions"]] == [
        (True, ["search_path=pg_catalog, pg_temp"], "cdms_owner")
    ] * 3
    api = [r for r in head["tables"] if r[1] in ("cdms_api", "cdms_customer")]
    assert api == [
        ("app.order_status_history", "cdms_api", "SELECT"),
        ("app.order_status_history", "cdms_customer", "SELECT"),
        ("dw.etl_source_delete", "cdms_api", "SELECT"),
    ]

    scratch = fresh_database()
    with psycopg.connect(to_libpq_url(scratch), autocommit=True) as conn:
        conn.execute("DROP SCHEMA app CASCADE; DROP SCHEMA dw CASCADE; DROP SCHEMA ml CASCADE")
        conn.execute("DELETE FROM alembic_version")
    before: dict[str, dict[str, list[tuple[object, ...]]]] = {}
    for revision in ("0022_incremental_indexes", "0023_history_by_triggers"):
        upgrade(scratch, revision)
        before[revision] = _trigger_rights(scratch)
    # at 0022 every one runs as the caller, owned by the migrating role
    assert [f[1:] for f in before["0022_incremental_indexes"]["functions"]] == [
        (False, None, me[0])
    ] * 3

    for revision in ("0023_history_by_triggers", "0022_incremental_indexes"):
        assert downgrade(at_head, revision)[1] == revision
        assert _trigger_rights(at_head) == before[revision], revision
    upgrade(at_head)
    assert current_revision(at_head) == head_revision()
    assert _trigger_rights(at_head) == head


def _bounds_state(url: str) -> dict[str, list[tuple[object, ...]]]:
    """What 0025 (the bounds on values) changes: the products' CHECKs, the procedures that
    check lines and orders, the summaries' and the RFM snapshot's column types, and the
    views reading fact_customer_rfm (BI's), with their grants, options and comments."""
    with psycopg.connect(to_libpq_url(url)) as conn:

        def rows(sql: str) -> list[tuple[object, ...]]:
            return conn.execute(sql).fetchall()

        return {
            "checks": rows(
                "SELECT conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint"
                " WHERE conrelid = 'app.products'::regclass AND contype = 'c' ORDER BY 1"
            ),
            "functions": rows(
                "SELECT oid::regproc::text, md5(prosrc) FROM pg_proc WHERE oid IN"
                " ('app.place_order'::regproc, 'app.recompute_order_totals'::regproc,"
                " 'app.order_items_maintain_totals'::regproc) ORDER BY 1"
            ),
            "columns": rows(
                "SELECT attrelid::regclass::text, attname, format_type(atttypid, atttypmod)"
                " FROM pg_attribute WHERE attnum > 0 AND NOT attisdropped AND attrelid IN"
                " ('app.customer_summary'::regclass, 'app.product_performance'::regclass,"
                " 'dw.fact_customer_rfm'::regclass) ORDER BY 1, 2"
            ),
            "views": rows(
                "SELECT c.oid::regclass::text, c.relacl::text, c.reloptions,"
                " obj_description(c.oid, 'pg_class'), c.relowner::regrole::text"
                " FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
                " WHERE c.relkind = 'v' AND n.nspname IN ('app', 'bi') ORDER BY 1"
            ),
            "indexes": rows(
                "SELECT indexrelid::regclass::text, pg_relation_filenode(indexrelid)"
                " FROM pg_index WHERE indrelid = 'dw.fact_customer_rfm'::regclass ORDER BY 1"
            ),
        }


def test_0025_goes_back_as_it_was_and_forward_again(fresh_database: Callable[[], str]) -> None:
    """0025 (bounds on prices, stock, lines and orders; wider sums) has a downgrade: a
    database taken back to 0024 is what 0024 made (compared with one migrated to it from
    scratch); upgraded again, what head makes. The BI views that read the RFM snapshot's
    widened columns are made again as they were (owner, grants, comment), and widening
    keeps the snapshot's indexes (no rewrite)."""
    import sqlalchemy as sa

    from db.engine import make_engine
    from semantic.bi import publish_views
    from semantic.validate import default_model

    def publish(url: str) -> None:
        engine = make_engine(url)
        with engine.begin() as conn:
            publish_views(conn, default_model())
            conn.execute(sa.text("GRANT SELECT ON ALL TABLES IN SCHEMA bi TO cdms_api"))
        engine.dispose()

    scratch = _migrated_to(fresh_database, "0024_source_delete_by_trigger")
    publish(scratch)
    before = _bounds_state(scratch)
    upgrade(scratch)
    widened = _bounds_state(scratch)
    assert widened["indexes"] == before["indexes"]  # kept, not rebuilt
    assert [v[1:] for v in widened["views"]] == [v[1:] for v in before["views"]]
    assert ("app.customer_summary", "lifetime_value", "numeric(20,2)") in widened["columns"]
    assert ("dw.fact_customer_rfm", "monetary", "numeric(20,2)") in widened["columns"]
    assert (
        "products_stock_check",
        "CHECK (((stock >= 0) AND (stock <= 1000000000)))",
        True,
    ) in widened["checks"]

    at_head = fresh_database()
    publish(at_head)
    head = _bounds_state(at_head)
    assert downgrade(at_head, "0024_source_delete_by_trigger")[1] == (
        "0024_source_delete_by_trigger"
    )
    back = _bounds_state(at_head)
    assert {k: v for k, v in back.items() if k != "indexes"} == {
        k: v for k, v in before.items() if k != "indexes"
    }
    upgrade(at_head)
    assert current_revision(at_head) == head_revision()
    again = _bounds_state(at_head)
    assert {k: v for k, v in again.items() if k != "indexes"} == {
        k: v for k, v in head.items() if k != "indexes"
    }


def _log_state(url: str) -> dict[str, list[tuple[object, ...]]]:
    """What 0026 (the prediction log's unique key) changes: ml.prediction_log's columns,
    constraints, indexes and comments."""
    with psycopg.connect(to_libpq_url(url)) as conn:

        def rows(sql: str) -> list[tuple[object, ...]]:
            return conn.execute(sql).fetchall()

        return {
            "columns": rows(
                "SELECT attname, format_type(atttypid, atttypmod), attnotnull,"
                " col_description(attrelid, attnum) FROM pg_attribute WHERE attnum > 0"
                " AND NOT attisdropped AND attrelid = 'ml.prediction_log'::regclass ORDER BY 1"
            ),
            "constraints": rows(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE conrelid = 'ml.prediction_log'::regclass ORDER BY 1"
            ),
            "indexes": rows(
                "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index"
                " WHERE indrelid = 'ml.prediction_log'::regclass ORDER BY 1"
            ),
            "comment": rows("SELECT obj_description('ml.prediction_log'::regclass, 'pg_class')"),
        }


def test_0026_keys_the_prediction_log_and_goes_back_as_it_was(
    fresh_database: Callable[[], str],
) -> None:
    """0026 keeps the rows the log holds (no digest: not deduplicated, the retention removes
    them) and makes a row with a digest unique per model version, object (a what-if's null
    included), principal and digest; its downgrade leaves the log as 0025 had it (compared
    with a database migrated to 0025 from scratch), and upgrading again works."""
    scratch = _migrated_to(fresh_database, "0025_value_bounds")
    before = _log_state(scratch)
    legacy = (
        "INSERT INTO ml.prediction_log (model, model_version, entity, entity_id, value, actor,"
        " requested_at) VALUES ('order_value', 1, 'order', 7, 1.5, 'apikey:1', now())"
    )
    with psycopg.connect(to_libpq_url(scratch), autocommit=True) as conn:
        conn.execute(legacy)
        conn.execute(legacy)  # one row per read, as 0007 logged
    upgrade(scratch)
    insert = (
        "INSERT INTO ml.prediction_log (model, model_version, entity, entity_id, label,"
        " probability, actor, requested_at, features_hash) VALUES ('order_status', 1, %s, %s,"
        " 'delivered', 0.9, %s, now(), %s) ON CONFLICT DO NOTHING"
    )
    with psycopg.connect(to_libpq_url(scratch), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM ml.prediction_log").fetchone() == (2,)
        for entity, entity_id in (("order", 7), ("what_if", None)):
            for actor, digest in (("apikey:1", b"a" * 16), ("apikey:1", b"a" * 16),
                                  ("apikey:2", b"a" * 16), ("apikey:1", b"b" * 16)):  # fmt: skip
                conn.execute(insert, (entity, entity_id, actor, digest))
        assert conn.execute("SELECT count(*) FROM ml.prediction_log").fetchone() == (8,)
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(insert, ("order", 8, "apikey:1", b"short"))

    at_head = fresh_database()
    head = _log_state(at_head)
    assert ("features_hash",) in [c[:1] for c in head["columns"]]
    _back_and_forward(at_head, "0025_value_bounds", _log_state, before, head)


def _customer_predictions_state(url: str) -> dict[str, list[tuple[object, ...]]]:
    """What 0027 (customers' expected order values stored) changes: ml.customer_predictions'
    columns, constraints and comment, and the view ml.stored_predictions."""
    with psycopg.connect(to_libpq_url(url)) as conn:

        def rows(sql: str) -> list[tuple[object, ...]]:
            return conn.execute(sql).fetchall()

        return {
            "columns": rows(
                "SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute"
                " WHERE attnum > 0 AND NOT attisdropped"
                " AND attrelid = 'ml.customer_predictions'::regclass ORDER BY 1"
            ),
            "constraints": rows(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE conrelid = 'ml.customer_predictions'::regclass ORDER BY 1"
            ),
            "comment": rows(
                "SELECT obj_description('ml.customer_predictions'::regclass, 'pg_class')"
            ),
            "view": rows("SELECT pg_get_viewdef('ml.stored_predictions'::regclass)"),
            "grants": rows(
                "SELECT grantee, privilege_type FROM information_schema.role_table_grants"
                " WHERE table_schema = 'ml' AND table_name = 'customer_predictions' ORDER BY 1, 2"
            ),
        }


def test_0027_stores_customers_order_values_and_goes_back_as_it_was(
    fresh_database: Callable[[], str],
) -> None:
    """0027 keeps the churn risks stored (its columns are NULL in the rows there are) and
    holds a customer's order_value prediction whole or not at all; the view lists it; its
    downgrade leaves the table and view as 0026 had them (compared with a database migrated
    to 0026 from scratch; a row holding only an order value is gone), and upgrading again
    works."""
    scratch = _migrated_to(fresh_database, "0026_prediction_log_once")
    before = _customer_predictions_state(scratch)
    churn = (
        "INSERT INTO ml.customer_predictions (customer_id, as_of, customer_key,"
        " churn_risk_version, churn_risk_label, churn_risk_probability,"
        " churn_risk_probabilities, churn_risk_doc) VALUES (1, date_trunc('day', now(), 'UTC'),"
        " 11, 1, 'active', 0.25, '[]', '{}')"
    )
    with psycopg.connect(to_libpq_url(scratch), autocommit=True) as conn:
        conn.execute(churn)
    upgrade(scratch)
    value = (
        "INSERT INTO ml.customer_predictions (customer_id, as_of, customer_key,"
        " order_value_version, order_value_value, order_value_doc) VALUES (%s, now(), 12, 2, %s,"
        " %s)"
    )
    with psycopg.connect(to_libpq_url(scratch), autocommit=True) as conn:
        assert conn.execute(
            "SELECT churn_risk_label, order_value_version FROM ml.customer_predictions"
        ).fetchall() == [("active", None)]
        conn.execute(value, (2, 31.5, '{"value":31.5}'))
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(value, (3, 31.5, None))
        assert conn.execute(
            "SELECT id, model, version, value FROM ml.stored_predictions"
            " WHERE kind = 'customer' ORDER BY id"
        ).fetchall() == [(1, "churn_risk", 1, None), (2, "order_value", 2, 31.5)]

    at_head = fresh_database()
    head = _customer_predictions_state(at_head)
    assert ("order_value_value", "double precision", False) in head["columns"]
    with psycopg.connect(to_libpq_url(at_head), autocommit=True) as conn:
        conn.execute(churn)
        conn.execute(value, (2, 31.5, '{"value":31.5}'))
    assert downgrade(at_head, "0026_prediction_log_once")[1] == "0026_prediction_log_once"
    assert _customer_predictions_state(at_head) == before
    with psycopg.connect(to_libpq_url(at_head)) as conn:
        assert conn.execute("SELECT customer_id FROM ml.customer_predictions").fetchall() == [(1,)]
    upgrade(at_head)
    assert current_revision(at_head) == head_revision()
    assert _customer_predictions_state(at_head) == head


def _feedback_rules_state(url: str) -> dict[str, list[tuple[object, ...]]]:
    """What 0028 (feedback's rules) changes: app.feedback's triggers and app's functions."""
    with psycopg.connect(to_libpq_url(url)) as conn:
        return {
            "triggers": conn.execute(
                "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger"
                " WHERE tgrelid = 'app.feedback'::regclass AND NOT tgisinternal ORDER BY 1"
            ).fetchall(),
            "functions": conn.execute(
                "SELECT p.proname FROM pg_proc AS p JOIN pg_namespace AS n"
                " ON n.oid = p.pronamespace WHERE n.nspname = 'app' ORDER BY 1"
            ).fetchall(),
        }


def test_0028_holds_feedback_to_its_rules_and_goes_back_as_it_was(
    fresh_database: Callable[[], str],
) -> None:
    """0028 adds one trigger (no row read or changed): with it a product named with an
    order must be in that order; its downgrade leaves app.feedback as 0027 had it (compared
    with a database migrated to 0027 from scratch), and upgrading again works."""
    scratch = _migrated_to(fresh_database, "0027_customer_order_value_stored")
    before = _feedback_rules_state(scratch)
    shop = (
        "INSERT INTO app.customers (id, email, first_name, last_name, country, region, city)"
        " VALUES (1, 'm@example.com', 'M', 'N', 'DE', 'R', 'C');"
        " INSERT INTO app.products (id, sku, name, category, subcategory, brand, unit_price,"
        " cost, stock) VALUES (1, 'M-1', 'm', 'c', 's', 'b', 1, 1, 5),"
        " (2, 'M-2', 'm', 'c', 's', 'b', 1, 1, 5);"
        " SELECT app.place_order(1, '[{\"product_id\": 1, \"quantity\": 1}]', 'web', 'card')"
    )
    elsewhere = (
        "INSERT INTO app.feedback (customer_id, order_id, product_id, rating)"
        " SELECT 1, min(id), 2, 3 FROM app.orders"
    )
    with psycopg.connect(to_libpq_url(scratch), autocommit=True) as conn:
        conn.execute(shop)
        conn.execute(elsewhere)  # taken before 0028: a product not in the order
    upgrade(scratch)
    with psycopg.connect(to_libpq_url(scratch), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM app.feedback").fetchone() == (1,)  # kept
        with pytest.raises(psycopg.Error) as exc:
            conn.execute(elsewhere)
        assert exc.value.sqlstate == "CD004"

    at_head = fresh_database()
    head = _feedback_rules_state(at_head)
    assert "feedback_rules" in [t[0] for t in head["triggers"]]
    _back_and_forward(
        at_head, "0027_customer_order_value_stored", _feedback_rules_state, before, head
    )


def _returns_procedures(url: str) -> list[tuple[object, ...]]:
    """What 0031 replaces: the return procedures' signatures and bodies."""
    with psycopg.connect(to_libpq_url(url)) as conn:
        return conn.execute(
            "SELECT oid::regprocedure::text, md5(prosrc) FROM pg_proc WHERE oid IN"
            " ('app.request_return'::regproc, 'app.approve_return'::regproc) ORDER BY 1"
        ).fetchall()


def test_0031_goes_back_as_it_was_and_forward_again(fresh_database: Callable[[], str]) -> None:
    """0031 (the return window, a line's refunds within its total) replaces two functions:
    its downgrade leaves them as 0030 had them (compared with a database migrated to 0030
    from scratch), and upgrading again gives head's."""
    scratch = _migrated_to(fresh_database, "0030_customer_daily_limits")
    before = _returns_procedures(scratch)

    at_head = fresh_database()
    head = _returns_procedures(at_head)
    assert len(head) == 2 and head != before
    _back_and_forward(at_head, "0030_customer_daily_limits", _returns_procedures, before, head)


def _feedback_edits_state(url: str) -> dict[str, list[tuple[object, ...]]]:
    """What 0033 (a customer's feedback edits bounded) adds: the log table with its rights
    and policies, the trigger on app.feedback, its function (rights, owner, body), and the
    app schema's rights (0033 lends cdms_owner CREATE on it for a moment)."""
    with psycopg.connect(to_libpq_url(url)) as conn:

        def rows(sql: str) -> list[tuple[object, ...]]:
            return conn.execute(sql).fetchall()

        return {
            "tables": rows(
                "SELECT c.relname::text, c.relacl::text, c.relrowsecurity, c.relforcerowsecurity"
                " FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'app' AND c.relkind IN ('r', 'i') ORDER BY 1"
            ),
            "policies": rows(
                "SELECT tablename::text, policyname::text, cmd, roles::text[] FROM pg_policies"
                " WHERE schemaname = 'app' ORDER BY 1, 2"
            ),
            "triggers": rows(
                "SELECT tgname::text, pg_get_triggerdef(oid) FROM pg_trigger"
                " WHERE tgrelid = 'app.feedback'::regclass AND NOT tgisinternal ORDER BY 1"
            ),
            "functions": rows(
                "SELECT p.oid::regprocedure::text, p.prosecdef, p.proconfig,"
                " p.proowner::regrole::text, md5(p.prosrc) FROM pg_proc AS p"
                " JOIN pg_namespace AS n ON n.oid = p.pronamespace WHERE n.nspname = 'app'"
                " ORDER BY 1"
            ),
            "schema": rows("SELECT nspacl::text FROM pg_namespace WHERE nspname = 'app'"),
        }


def test_0033_goes_back_as_it_was_and_forward_again(fresh_database: Callable[[], str]) -> None:
    """0033 (at most 20 feedback edits a day for a customer principal) adds a table written
    by one trigger on app.feedback: its downgrade leaves the database as 0032 had it
    (compared with one migrated to 0032 from scratch), and upgrading again gives head's."""
    scratch = _migrated_to(fresh_database, "0032_customer_write_columns")
    before = _feedback_edits_state(scratch)

    at_head = fresh_database()
    head = _feedback_edits_state(at_head)
    assert ("feedback_edits", "owner_all", "ALL", ["cdms_owner"]) in head["policies"]
    assert "feedback_edit_limit" in [t[0] for t in head["triggers"]]
    assert [f[1:4] for f in head["functions"] if f[0] == "app.feedback_edit_limit()"] == [
        (True, ["search_path=pg_catalog, pg_temp"], "cdms_owner")
    ]
    assert head != before
    _back_and_forward(at_head, "0032_customer_write_columns", _feedback_edits_state, before, head)


def _customer_keys_state(url: str) -> dict[str, list[tuple[object, ...]]]:
    """What 0034 (a customer's keys revoked with it) changes: the triggers on
    app.customers, the functions of schema app with their rights, and who holds which
    privilege on app.api_keys and its columns."""
    with psycopg.connect(to_libpq_url(url)) as conn:

        def rows(sql: str) -> list[tuple[object, ...]]:
            return conn.execute(sql).fetchall()

        return {
            "triggers": rows(
                "SELECT tgname, pg_get_triggerdef(oid), tgenabled FROM pg_trigger"
                " WHERE tgrelid = 'app.customers'::regclass AND NOT tgisinternal ORDER BY 1"
            ),
            "functions": rows(
                "SELECT oid::regprocedure::text, prosecdef, proconfig,"
                " proowner::regrole::text, md5(prosrc), proacl::text[] FROM pg_proc"
                " WHERE pronamespace = 'app'::regnamespace ORDER BY 1"
            ),
            "table": rows(
                "SELECT a.grantee::regrole::text, a.privilege_type FROM pg_class AS c,"
                " aclexplode(c.relacl) AS a WHERE c.oid = 'app.api_keys'::regclass ORDER BY 1, 2"
            ),
            "columns": rows(
                "SELECT t.attname::text, a.grantee::regrole::text, a.privilege_type"
                " FROM pg_attribute AS t, aclexplode(t.attacl) AS a"
                " WHERE t.attrelid = 'app.api_keys'::regclass ORDER BY 1, 2, 3"
            ),
            "schema": rows(
                "SELECT a.grantee::regrole::text, a.privilege_type FROM pg_namespace AS n,"
                " aclexplode(n.nspacl) AS a WHERE n.nspname = 'app' ORDER BY 1, 2"
            ),
        }


def test_0034_goes_back_as_it_was_and_forward_again(fresh_database: Callable[[], str]) -> None:
    """0034 (deleting a customer, or emptying app.customers, revokes its API keys) adds two
    triggers, their function and its privileges on app.api_keys: its downgrade leaves what
    0033 made (compared with a database migrated to 0033 from scratch), and upgrading again
    gives head's."""
    scratch = _migrated_to(fresh_database, "0033_feedback_edit_limit")
    before = _customer_keys_state(scratch)
    # a key whose customer went before 0034 (an orphan) is revoked by it: refused at look-up
    # either way, but a customer given that id again would have brought it back to life
    # (the second hostile review)
    orphan = (
        "INSERT INTO app.customers (id, email, first_name, last_name, country, region, city)"
        " VALUES (77, 'o@example.com', 'O', 'P', 'DE', 'R', 'C');"
        " INSERT INTO app.api_keys (key_prefix, key_hash, name, role, customer_id) VALUES"
        f" ('cdms_0000000a', '{'a' * 64}', 'o', 'customer', 77),"
        f" ('cdms_0000000b', '{'b' * 64}', 's', 'service', NULL);"
        " DELETE FROM app.customers WHERE id = 77"
    )
    with psycopg.connect(to_libpq_url(scratch), autocommit=True) as conn:
        conn.execute(orphan)
    upgrade(scratch)
    with psycopg.connect(to_libpq_url(scratch)) as conn:
        revoked = "SELECT key_hash, revoked_at IS NOT NULL FROM app.api_keys ORDER BY 1"
        assert conn.execute(revoked).fetchall() == [("a" * 64, True), ("b" * 64, False)]

    at_head = fresh_database()
    head = _customer_keys_state(at_head)
    added = {t[0] for t in head["triggers"]} - {t[0] for t in before["triggers"]}
    assert added == {"revoke_keys_on_delete", "revoke_keys_on_truncate"}
    [fn] = [f for f in head["functions"] if f[0] == "app.revoke_customer_keys()"]
    assert fn[1:4] == (True, ["search_path=pg_catalog, pg_temp"], "cdms_owner")
    assert ("revoked_at", "cdms_owner", "UPDATE") in head["columns"]
    _back_and_forward(at_head, "0033_feedback_edit_limit", _customer_keys_state, before, head)


def _idempotency_state(url: str) -> dict[str, list[tuple[object, ...]]]:
    """What 0035 (idempotency keys per customer) changes: the policies on
    app.idempotency_keys, the functions of schema app with their rights, and the comments."""
    with psycopg.connect(to_libpq_url(url)) as conn:

        def rows(sql: str) -> list[tuple[object, ...]]:
            return conn.execute(sql).fetchall()

        return {
            "policies": rows(
                "SELECT policyname, roles::text[], cmd, qual, with_check FROM pg_policies"
                " WHERE schemaname = 'app' AND tablename = 'idempotency_keys' ORDER BY 1"
            ),
            "functions": rows(
                "SELECT oid::regprocedure::text, prosecdef, md5(prosrc), proacl::text[]"
                " FROM pg_proc WHERE pronamespace = 'app'::regnamespace ORDER BY 1"
            ),
            "comments": rows(
                "SELECT objsubid, description FROM pg_description"
                " WHERE objoid = 'app.idempotency_keys'::regclass ORDER BY 1"
            ),
        }


def test_0035_goes_back_as_it_was_and_forward_again(fresh_database: Callable[[], str]) -> None:
    """0035 (a customer's credentials share its idempotency keys) replaces a policy and adds
    app.idempotency_scope(); the keys a customer's API keys hold move to the customer (the
    first of each key where two of its API keys used one; a key the customer's token already
    holds stays with the token). Its downgrade leaves what 0034 made, upgrading again gives
    head's."""
    scratch = _migrated_to(fresh_database, "0034_customer_keys_revoked")
    before = _idempotency_state(scratch)
    h = "0" * 64
    with psycopg.connect(to_libpq_url(scratch), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO app.customers (id, email, first_name, last_name, country, region, city)"
            " VALUES (77, 'o@example.com', 'O', 'P', 'DE', 'R', 'C')"
        )
        k1, k2, svc = (
            conn.execute(
                "INSERT INTO app.api_keys (key_prefix, key_hash, name, role, customer_id)"
                " VALUES (%s, %s, 'k', %s, %s) RETURNING id",
                (f"cdms_0000000{n}", n * 64, role, customer),
            ).fetchone()[0]  # type: ignore[index]
            for n, role, customer in [
                ("a", "customer", 77),
                ("b", "customer", 77),
                ("c", "service", None),
            ]
        )
        for principal, key, minutes in [
            (f"apikey:{k1}", "a", 3), (f"apikey:{k2}", "a", 2), ("customer:77", "b", 2),
            (f"apikey:{k1}", "b", 1), (f"apikey:{svc}", "c", 1),
        ]:  # fmt: skip
            conn.execute(
                "INSERT INTO app.idempotency_keys (principal, key, request_sha256, created_at)"
                " VALUES (%s, %s, %s, now() - make_interval(mins => %s))",
                (principal, key, h, minutes),
            )
    upgrade(scratch)
    with psycopg.connect(to_libpq_url(scratch)) as conn:
        held = conn.execute("SELECT principal, key FROM app.idempotency_keys ORDER BY 2, 1")
        assert held.fetchall() == [
            (f"apikey:{k2}", "a"), ("customer:77", "a"),  # k1's, the first
            (f"apikey:{k1}", "b"), ("customer:77", "b"),  # the token's stays
            (f"apikey:{svc}", "c"),
        ]  # fmt: skip
        # as the customer's key: its scope's keys and, for the previous version still
        # serving during a rolling upgrade, its actor's; nobody else's
        conn.execute(
            "SET ROLE cdms_customer; SELECT set_config('cdms.role', 'customer', false),"
            " set_config('cdms.customer_id', '77', false),"
            f" set_config('cdms.actor', 'apikey:{k1}', false)"
        )
        insert = (
            "INSERT INTO app.idempotency_keys (principal, key, request_sha256) VALUES (%s, 'd', %s)"
        )
        for principal in ("customer:77", f"apikey:{k1}"):
            conn.execute(insert, (principal, h))
        for principal in ("customer:78", f"apikey:{k2}"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute(insert, (principal, h))
        seen = conn.execute("SELECT DISTINCT principal FROM app.idempotency_keys ORDER BY 1")
        assert seen.fetchall() == [(f"apikey:{k1}",), ("customer:77",)]
        conn.rollback()

    at_head = fresh_database()
    head = _idempotency_state(at_head)
    assert head != before
    [policy] = [p for p in head["policies"] if p[0] == "own_keys"]
    assert "idempotency_scope()" in str(policy[3]) and "idempotency_scope()" in str(policy[4])
    _back_and_forward(at_head, "0034_customer_keys_revoked", _idempotency_state, before, head)


def _order_guard_state(url: str) -> list[tuple[object, ...]]:
    """What 0036 (an order RETURNED through its returns only) replaces: the functions of
    schema app (signature, owner, rights, body) and the triggers on app.orders."""
    with psycopg.connect(to_libpq_url(url)) as conn:
        return conn.execute(
            "SELECT oid::regprocedure::text, prosecdef, proowner::regrole::text,"
            " proacl::text[], md5(prosrc) FROM pg_proc"
            " WHERE pronamespace = 'app'::regnamespace"
            " UNION ALL SELECT tgname::text, NULL, NULL, NULL, pg_get_triggerdef(oid)"
            " FROM pg_trigger WHERE tgrelid = 'app.orders'::regclass AND NOT tgisinternal"
            " ORDER BY 1"
        ).fetchall()


def _straight_to_returned(url: str) -> bool:
    """Whether a delivered order of one unit, with no return, can be set returned (in a
    transaction rolled back)."""
    with psycopg.connect(to_libpq_url(url)) as conn:
        order = conn.execute(
            "WITH c AS (INSERT INTO app.customers (email, first_name, last_name, country,"
            " region, city) VALUES ('r@example.com', 'R', 'T', 'DE', 'R', 'C') RETURNING id),"
            " p AS (INSERT INTO app.products (sku, name, category, subcategory, brand,"
            " unit_price, cost, stock) VALUES ('R-0036', 'r', 'Toys', 't', 'b', 10, 5, 5)"
            " RETURNING id)"
            " SELECT app.place_order(c.id, jsonb_build_array(jsonb_build_object("
            "'product_id', p.id, 'quantity', 1)), 'web', 'card') FROM c, p"
        ).fetchone()[0]  # type: ignore[index]
        for step in ("paid", "shipped", "delivered"):
            conn.execute("SELECT app.set_order_status(%s, %s)", (order, step))
        try:
            conn.execute("SELECT app.set_order_status(%s, 'returned')", (order,))
        except psycopg.Error as exc:
            assert exc.sqlstate == "CD002", exc
            return False
        finally:
            conn.rollback()
        return True


def test_0036_goes_back_as_it_was_and_forward_again(fresh_database: Callable[[], str]) -> None:
    """0036 (delivered -> returned only once approved returns cover every unit) replaces
    app.orders_guard_status: its downgrade leaves what 0035 made (compared with a database
    migrated to 0035 from scratch, which allows the direct move), upgrading again gives
    head's."""
    scratch = _migrated_to(fresh_database, "0035_idempotency_per_customer")
    before = _order_guard_state(scratch)
    assert _straight_to_returned(scratch)

    at_0036 = _order_guard_state(_migrated_to(fresh_database, "0036_returned_by_returns"))
    changed = {f[0] for f in at_0036 if f not in before} | {
        f[0] for f in before if f not in at_0036
    }
    assert changed == {"app.orders_guard_status()"}  # (at 0036: later revisions change more)
    at_head = fresh_database()
    head = _order_guard_state(at_head)
    assert not _straight_to_returned(at_head)
    _back_and_forward(at_head, "0035_idempotency_per_customer", _order_guard_state, before, head)
    assert not _straight_to_returned(at_head)


def _return_notes_state(url: str) -> dict[str, list[tuple[object, ...]]]:
    """What 0037 (the shop's decision note apart from the customer's comment) changes: the
    columns of app.returns with their checks and comments, who may write which of them, and
    the functions of schema app (signature, rights, body)."""
    with psycopg.connect(to_libpq_url(url)) as conn:

        def rows(sql: str) -> list[tuple[object, ...]]:
            return conn.execute(sql).fetchall()

        return {
            "columns": rows(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,"
                " a.attacl::text[], col_description(a.attrelid, a.attnum) FROM pg_attribute AS a"
                " WHERE a.attrelid = 'app.returns'::regclass AND a.attnum > 0"
                " AND NOT a.attisdropped ORDER BY 1"
            ),
            "checks": rows(
                "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE conrelid = 'app.returns'::regclass ORDER BY 1"
            ),
            "table": rows(
                "SELECT relacl::text[] FROM pg_class WHERE oid = 'app.returns'::regclass"
            ),
            "functions": rows(
                "SELECT oid::regprocedure::text, prosecdef, proacl::text[], md5(prosrc)"
                " FROM pg_proc WHERE pronamespace = 'app'::regnamespace ORDER BY 1"
            ),
        }


BEFORE_0038 = "0037_return_decision_comment"  # the revision 0038 follows
VISIBLE_TEXT = {  # the columns that had to be "not blank" (0002, 0019), and only they
    "customers": ("first_name", "last_name"),
    "products": ("name",),
    "support_tickets": ("subject",),
}
MAY_BE_EMPTY = {  # required, but "" is a value (a country without regions, unbranded goods)
    "customers": ("country", "region", "city"),
    "products": ("category", "subcategory", "brand"),
}


def _visible_text_state(url: str) -> dict[str, list[tuple[object, ...]]]:
    """What 0038 (required text has a visible character) changes: the CHECKs of the required
    text columns (definition, validated), the functions of schema app (bodies, rights)."""
    with psycopg.connect(to_libpq_url(url)) as conn:

        def rows(sql: str) -> list[tuple[object, ...]]:
            return conn.execute(sql).fetchall()

        return {
            "checks": rows(
                "SELECT conrelid::regclass::text, conname::text, pg_get_constraintdef(oid),"
                " convalidated FROM pg_constraint WHERE contype = 'c' AND conrelid IN"
                " ('app.customers'::regclass, 'app.products'::regclass,"
                " 'app.support_tickets'::regclass) ORDER BY 1, 2"
            ),
            "functions": rows(
                "SELECT oid::regprocedure::text, provolatile, md5(prosrc), proacl::text[]"
                " FROM pg_proc WHERE pronamespace = 'app'::regnamespace ORDER BY 1"
            ),
        }


def _rejected_with_a_note(url: str, n: int) -> int:
    """A delivered order's return, rejected with a note (committed): the id of the return."""
    with psycopg.connect(to_libpq_url(url)) as conn:
        order = conn.execute(
            "WITH c AS (INSERT INTO app.customers (email, first_name, last_name, country,"
            " region, city) VALUES (%(n)s || '@example.com', 'N', 'T', 'DE', 'R', 'C')"
            " RETURNING id),"
            " p AS (INSERT INTO app.products (sku, name, category, subcategory, brand,"
            " unit_price, cost, stock) VALUES ('R-0037-' || %(n)s, 'r', 'Toys', 't', 'b', 10,"
            " 5, 5)"
            " RETURNING id)"
            " SELECT app.place_order(c.id, jsonb_build_array(jsonb_build_object("
            "'product_id', p.id, 'quantity', 1)), 'web', 'card') FROM c, p",
            {"n": str(n)},
        ).fetchone()[0]  # type: ignore[index]
        for step in ("paid", "shipped", "delivered"):
            conn.execute("SELECT app.set_order_status(%s, %s)", (order, step))
        returned = conn.execute(
            "SELECT app.request_return(%s, 1, 1, 'damaged', 'box crushed')", (order,)
        ).fetchone()[0]  # type: ignore[index]
        conn.execute("SELECT app.reject_return(%s, 'staff note')", (returned,))
        conn.commit()
        return int(returned)  # type: ignore[call-overload]


def test_0037_goes_back_as_it_was_and_forward_again(fresh_database: Callable[[], str]) -> None:
    """0037 (probe 22, M1: app.reject_return wrote the shop's note over the customer's
    comment) adds app.returns.decision_comment, which app.reject_return now writes, and keeps
    the staff's role from updating comment. A comment 0036 already overwrote stays as it is
    (what the customer wrote is gone); its downgrade leaves what 0036 made (compared with a
    database migrated to 0036 from scratch), upgrading again gives head's."""
    scratch = _migrated_to(fresh_database, "0036_returned_by_returns")
    before = _return_notes_state(scratch)
    old = _rejected_with_a_note(scratch, 1)
    upgrade(scratch)
    with psycopg.connect(to_libpq_url(scratch)) as conn:
        kept = conn.execute(
            "SELECT comment, decision_comment FROM app.returns WHERE id = %s", (old,)
        ).fetchone()
        assert kept == ("staff note", None)  # cannot be told from a customer's comment
    new = _rejected_with_a_note(scratch, 2)
    with psycopg.connect(to_libpq_url(scratch)) as conn:
        kept = conn.execute(
            "SELECT comment, decision_comment FROM app.returns WHERE id = %s", (new,)
        ).fetchone()
        assert kept == ("box crushed", "staff note")
        # the signature older code calls during a rolling upgrade is the one it was
        assert conn.execute(
            "SELECT oid::regprocedure::text FROM pg_proc WHERE proname = 'reject_return'"
        ).fetchall() == [("app.reject_return(bigint,text)",)]

    at_head = fresh_database()
    head = _return_notes_state(at_head)
    assert "decision_comment" in [c[0] for c in head["columns"]]
    _back_and_forward(at_head, "0036_returned_by_returns", _return_notes_state, before, head)


def test_0038_cleans_blank_text_and_goes_back_as_it_was(fresh_database: Callable[[], str]) -> None:
    """0038 holds the text that had to be "not blank" (names, a product's name, a ticket's
    subject) to at least one visible character (hostile probe 22, L2). Rows already holding
    none (a ticket's subject "\\u3000", a first name "\\u200b") do not stop the upgrade: they
    read "(blank)" afterwards, and every CHECK is validated (a row left violating one would
    refuse every later update of that row, a ticket's status change included). A place or a
    brand is left as it was, "" or "\\t" included, and so are its CHECK (hostile probe 23,
    L2). Its downgrade leaves the rules as 0037 had them (compared with a database migrated
    there from scratch), and upgrading again gives head's."""
    scratch = _migrated_to(fresh_database, BEFORE_0038)
    before = _visible_text_state(scratch)
    with psycopg.connect(to_libpq_url(scratch), autocommit=True) as conn:
        customer = conn.execute(
            "INSERT INTO app.customers (email, first_name, last_name, country, region, city)"
            " VALUES ('b@example.com', E'\\u200b', 'P', 'DE', E'\\t', E'\\u200b') RETURNING id"
        ).fetchone()
        assert customer is not None
        conn.execute(
            "INSERT INTO app.products (sku, name, category, subcategory, brand, unit_price,"
            " cost, stock) VALUES ('BLANK-1', E'\\u3000', 'c', 's', '', 1, 1, 1)"
        )
        conn.execute(
            "INSERT INTO app.support_tickets (customer_id, category, channel, subject)"
            " VALUES (%s, 'other', 'web', E'\\u3000\\u00a0'), (%s, 'other', 'web', 'kept ')",
            (customer[0], customer[0]),
        )
    upgrade(scratch)
    with psycopg.connect(to_libpq_url(scratch)) as conn:
        assert conn.execute(
            "SELECT first_name, last_name, region, city FROM app.customers WHERE id = %s",
            (customer[0],),
        ).fetchall() == [("(blank)", "P", "\t", "\u200b")]
        assert conn.execute(
            "SELECT name, category, brand FROM app.products WHERE sku = 'BLANK-1'"
        ).fetchall() == [("(blank)", "c", "")]
        assert conn.execute(
            "SELECT subject FROM app.support_tickets WHERE customer_id = %s ORDER BY id",
            (customer[0],),
        ).fetchall() == [("(blank)",), ("kept ",)]

    at_head = fresh_database()
    head = _visible_text_state(at_head)
    named = {(t.removeprefix("app."), c) for t, c, _, _ in head["checks"]}
    assert named >= {(t, f"{t}_{c}_check") for t, cs in VISIBLE_TEXT.items() for c in cs}
    assert all(valid for *_, valid in head["checks"]), head["checks"]
    assert head != before
    left = {f"{t}_{c}_check" for t, cs in MAY_BE_EMPTY.items() for c in cs}

    def left_alone(checks: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
        return [check for check in checks if check[1] in left]

    assert len(left_alone(before["checks"])) == len(left) == 6
    assert left_alone(head["checks"]) == left_alone(before["checks"])  # 0019's, as they were
    _back_and_forward(at_head, BEFORE_0038, _visible_text_state, before, head)


def test_0038_rewrites_and_validates_without_holding_readers(
    fresh_database: Callable[[], str],
) -> None:
    """0038's ALTER TABLEs need ACCESS EXCLUSIVE, which every read of the table waits for,
    and a revision's locks last until it commits: rewriting the rows without a visible
    character and validating the CHECKs (a scan of each table: ~0.7 s per 100,000 customers)
    held every order read behind it (hostile probe 23, L3). Only the catalogue change may be
    made under that lock; the rewrite and the validation come after it is released. Seen
    here in the middle of the rewrite (a trigger makes it wait): readers are not held."""
    scratch = _migrated_to(fresh_database, BEFORE_0038)
    libpq = to_libpq_url(scratch)
    key = 380038
    with psycopg.connect(libpq, autocommit=True) as conn:
        customer = conn.execute(
            "INSERT INTO app.customers (email, first_name, last_name, country, region, city)"
            " VALUES ('w@example.com', 'W', E'\\t', 'DE', 'R', 'C') RETURNING id"
        ).fetchone()
        assert customer is not None
        conn.execute(
            "INSERT INTO app.support_tickets (customer_id, category, channel, subject)"
            " VALUES (%s, 'other', 'web', E'\\u3000')",
            (customer[0],),
        )
        conn.execute(
            "CREATE FUNCTION public.wait_in_0038() RETURNS trigger LANGUAGE plpgsql AS"
            f" $$ BEGIN PERFORM pg_advisory_xact_lock({key}); RETURN NEW; END $$;"
            " CREATE TRIGGER wait_in_0038 BEFORE UPDATE ON app.support_tickets"
            " FOR EACH ROW EXECUTE FUNCTION public.wait_in_0038()"
        )
    failed: list[BaseException] = []

    def migrate() -> None:
        try:
            upgrade(scratch, "0038_visible_text")
        except BaseException as exc:  # told by the main thread
            failed.append(exc)

    with psycopg.connect(libpq, autocommit=True) as gate:
        gate.execute("SELECT pg_advisory_lock(%s)", (key,))
        worker = threading.Thread(target=migrate)
        worker.start()
        try:
            deadline = time.monotonic() + 30
            pid = None
            while pid is None and time.monotonic() < deadline and worker.is_alive():
                row = gate.execute(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    " AND objid = %s",
                    (key,),
                ).fetchone()
                pid = row[0] if row else None
                time.sleep(0.01)
            assert pid is not None, failed  # the rewrite reached the ticket
            held = gate.execute(
                "SELECT relation::regclass::text, mode FROM pg_locks WHERE pid = %s"
                " AND granted AND locktype = 'relation' AND relation IN"
                " ('app.customers'::regclass, 'app.products'::regclass,"
                " 'app.support_tickets'::regclass) ORDER BY 1, 2",
                (pid,),
            ).fetchall()
            assert all(mode != "AccessExclusiveLock" for _, mode in held), held
            with psycopg.connect(libpq) as reader:
                reader.execute("SET lock_timeout = '200ms'")
                reader.execute(
                    "SELECT (SELECT count(*) FROM app.customers),"
                    " (SELECT count(*) FROM app.products),"
                    " (SELECT count(*) FROM app.support_tickets)"
                ).fetchone()
        finally:
            gate.execute("SELECT pg_advisory_unlock(%s)", (key,))
            worker.join(60)
    assert not failed, failed
    assert current_revision(scratch) == "0038_visible_text"
    with psycopg.connect(libpq, autocommit=True) as conn:
        assert conn.execute(
            "SELECT last_name FROM app.customers WHERE id = %s", (customer[0],)
        ).fetchone() == ("(blank)",)
        assert conn.execute(
            "SELECT subject FROM app.support_tickets WHERE customer_id = %s", (customer[0],)
        ).fetchone() == ("(blank)",)
        assert conn.execute(
            "SELECT count(*) FILTER (WHERE NOT convalidated) FROM pg_constraint"
            " WHERE conname IN ('customers_first_name_check', 'customers_last_name_check',"
            " 'products_name_check', 'support_tickets_subject_check')"
        ).fetchone() == (0,)
        conn.execute("DROP TRIGGER wait_in_0038 ON app.support_tickets")
    assert upgrade(scratch)[1] == head_revision()


def test_0038_cut_after_its_catalogue_step_is_completed_by_the_next_upgrade(
    fresh_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """0038 commits its catalogue step (the CHECKs NOT VALID, the functions) before it
    rewrites and validates, so a process stopped between the two leaves 0037 stamped with
    that step made: the next upgrade makes it again and finishes, as from 0037."""
    from db.migrations import sqlfile

    scratch = _migrated_to(fresh_database, BEFORE_0038)
    with psycopg.connect(to_libpq_url(scratch), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO app.customers (email, first_name, last_name, country, region, city)"
            " VALUES ('cut@example.com', E'\\u200b', 'P', 'DE', 'R', 'C')"
        )
    original = sqlfile.run_sql_file
    calls: list[str] = []

    def cut(name: str, **kwargs: Any) -> None:
        calls.append(name)
        if len(calls) == 2:
            raise RuntimeError("stopped between 0038's steps")
        original(name, **kwargs)

    monkeypatch.setattr(sqlfile, "run_sql_file", cut)
    with pytest.raises(RuntimeError, match="stopped"):
        upgrade(scratch, "0038_visible_text")
    monkeypatch.setattr(sqlfile, "run_sql_file", original)
    assert current_revision(scratch) == BEFORE_0038
    upgrade(scratch)
    assert current_revision(scratch) == head_revision()
    with psycopg.connect(to_libpq_url(scratch)) as conn:
        assert conn.execute(
            "SELECT first_name FROM app.customers WHERE email = 'cut@example.com'"
        ).fetchone() == ("(blank)",)
    at_head = fresh_database()
    assert _visible_text_state(scratch) == _visible_text_state(at_head)
