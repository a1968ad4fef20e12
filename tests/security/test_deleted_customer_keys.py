"""A customer key outlives nothing of its customer: deleting the customer (or emptying the
table, a reseed) revokes its keys, and a key whose customer is gone all the same (an orphan
made before migration 0034) is refused like an unknown one. Else a key of a deleted
customer kept authenticating, and the customer's id given again (an insert with an explicit
id, a reseed restarting the identity) handed the old key the new customer (probe 9, L3)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from api.apikeys import create_key, find_active, list_keys
from db.engine import make_engine
from tests.security.conftest import bearer, make_app, post
from tests.security.transports import receive, ws_init

ME = "{ customers { edges { node { id } } } }"
PROTOCOLS = ["graphql-transport-ws", "graphql-ws"]


@pytest.fixture(scope="module", name="sec_engine")
def own_engine(clone_database: Callable[[str], str]) -> Engine:
    """A database of this module's own: its customers come and go (the shared one's count
    is asserted elsewhere)."""
    return make_engine(clone_database("delkeys"))


@pytest.fixture(scope="module")
def fresh(sec_engine: Engine) -> Iterator[TestClient]:
    """The app looking every key up on every request (no key cache)."""
    with make_app(sec_engine, apikey_cache_s=0) as client:
        yield client


def new_customer(conn: sa.Connection, customer_id: int | None = None) -> int:
    """A customer inserted by the owner; with ``customer_id``, under that id (as a restore
    or a re-insert gives it)."""
    email = f"gone-{secrets.token_hex(6)}@example.com"
    values = {"email": email, "first_name": "Del", "last_name": "Eted", "country": "DE",
              "region": "R", "city": "C"}  # fmt: skip
    if customer_id is not None:
        values["id"] = customer_id
    table = sa.table("customers", *(sa.column(c) for c in [*values, "id"]), schema="app")
    return int(conn.execute(sa.insert(table).values(values).returning(table.c.id)).scalar_one())


def delete_customer(engine: Engine, customer_id: int) -> None:
    with engine.begin() as conn:  # as the owner, in SQL
        conn.execute(sa.text("DELETE FROM app.customers WHERE id = :id"), {"id": customer_id})


def refused_as_unknown(client: TestClient, key: str) -> None:
    """HTTP 401 with the message of a key never issued (no oracle), and a WebSocket whose
    key is in the header or in connection_init's payload closed 4401."""
    unknown = f"cdms_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"
    status, body = post(client, key, ME)
    assert status == 401 and body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", body
    status_unknown, body_unknown = post(client, unknown, ME)
    assert status_unknown == 401
    assert body["errors"][0]["message"] == body_unknown["errors"][0]["message"]
    for protocol in PROTOCOLS:
        headers = bearer(key)
        with (
            pytest.raises(WebSocketDisconnect) as closed,
            client.websocket_connect("/graphql", subprotocols=[protocol], headers=headers) as ws,
        ):
            ws_init(ws, protocol)
            receive(ws)
        assert closed.value.code == 4401, protocol
        with (
            pytest.raises(WebSocketDisconnect) as closed,
            client.websocket_connect("/graphql", subprotocols=[protocol]) as ws,
        ):
            ws_init(ws, protocol, {"Authorization": f"Bearer {key}"})
            receive(ws)
        assert closed.value.code == 4401, protocol


def revoked_at(engine: Engine, key_id: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT revoked_at FROM app.api_keys WHERE id = :id"), {"id": key_id}
        ).scalar_one()


def test_deleting_a_customer_revokes_its_keys_and_its_id_given_again_is_not_its_keys(
    fresh: TestClient, sec_engine: Engine
) -> None:
    with sec_engine.begin() as conn:
        gone, stays = new_customer(conn), new_customer(conn)
    row, key = create_key(sec_engine, "customer", gone, name="of a deleted customer")
    _, other = create_key(sec_engine, "customer", stays, name="of a customer who stays")
    staff_row, staff = create_key(sec_engine, "analyst", name="staff, untouched")
    status, body = post(fresh, key, ME)
    assert status == 200 and body["data"]["customers"]["edges"] == [{"node": {"id": str(gone)}}]

    delete_customer(sec_engine, gone)
    assert revoked_at(sec_engine, row.id) is not None  # kept, with when it ended
    assert revoked_at(sec_engine, staff_row.id) is None
    refused_as_unknown(fresh, key)
    assert post(fresh, other, ME)[0] == 200 and post(fresh, staff, ME)[0] == 200

    # the id given again (a restore, an insert with an explicit id): a new customer's, not
    # the old key's
    with sec_engine.begin() as conn:
        assert new_customer(conn, gone) == gone
    refused_as_unknown(fresh, key)
    assert [k.revoked_at is not None for k in list_keys(sec_engine) if k.id == row.id] == [True]


def test_an_admin_principal_deleting_a_customer_revokes_its_keys_it_cannot_read(
    fresh: TestClient, sec_engine: Engine
) -> None:
    """The trigger runs as cdms_owner: an admin's delete (role cdms_api, which has no
    privilege on app.api_keys) revokes the keys all the same."""
    with sec_engine.begin() as conn:
        gone = new_customer(conn)
    row, key = create_key(sec_engine, "customer", gone, name="deleted by an admin")
    with sec_engine.begin() as conn:
        conn.execute(
            sa.text(
                "SELECT set_config('role', 'cdms_api', true),"
                " set_config('cdms.role', 'admin', true)"
            )
        )
        assert (
            conn.execute(sa.text("DELETE FROM app.customers WHERE id = :id"), {"id": gone}).rowcount
            == 1
        )
    assert revoked_at(sec_engine, row.id) is not None
    refused_as_unknown(fresh, key)


def test_a_key_whose_customer_is_gone_is_refused_and_listed_revoked(
    fresh: TestClient, sec_engine: Engine
) -> None:
    """An orphan: its customer gone while it was kept (made before 0034, or the trigger
    off for a bulk delete): refused as an unknown key, listed as revoked."""
    with sec_engine.begin() as conn:
        gone, live = new_customer(conn), new_customer(conn)
    row, key = create_key(sec_engine, "customer", live, name="orphan")
    assert post(fresh, key, ME)[0] == 200
    delete_customer(sec_engine, gone)
    with sec_engine.begin() as conn:  # the key now names a customer that is no more
        conn.execute(
            sa.text("UPDATE app.api_keys SET customer_id = :c WHERE id = :id"),
            {"c": gone, "id": row.id},
        )
    assert revoked_at(sec_engine, row.id) is None
    assert find_active(sec_engine, key) is None
    refused_as_unknown(fresh, key)
    listed = {k.id: k for k in list_keys(sec_engine)}
    assert listed[row.id].revoked is True and listed[row.id].customer_gone is True


def test_emptying_the_customers_revokes_every_customer_key(
    fresh_database: Callable[[], str],
) -> None:
    """A reseed (`cdms seed --reset`: TRUNCATE ... RESTART IDENTITY CASCADE) gives the ids
    again from 1: every customer key is revoked, the shop's own keys are kept."""
    engine = make_engine(fresh_database())
    with engine.begin() as conn:
        first = new_customer(conn)
    row, key = create_key(engine, "customer", first, name="before the reseed")
    staff_row, staff = create_key(engine, "admin", name="the shop's")
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE app.customers RESTART IDENTITY CASCADE"))
        assert new_customer(conn) == first  # the same id, another customer
    assert revoked_at(engine, row.id) is not None
    assert find_active(engine, key) is None
    found = find_active(engine, staff)
    assert found is not None and found.id == staff_row.id


def test_apikey_list_shows_an_orphan_key_as_revoked(
    fresh_database: Callable[[], str], cli_env: dict[str, str]
) -> None:
    from tests.cli import run_cdms

    url = fresh_database()
    engine = make_engine(url)
    with engine.begin() as conn:
        live = new_customer(conn)
    row, _ = create_key(engine, "customer", live, name="orphan key")
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE app.api_keys SET customer_id = :c WHERE id = :id"),
            {"c": live + 1000, "id": row.id},
        )
    listed = run_cdms({**cli_env, "DATABASE_URL": url}, "apikey", "list")
    assert listed.returncode == 0, listed.stderr
    line = next(ln for ln in listed.stdout.splitlines() if "orphan key" in ln)
    assert "customer deleted" in line, listed.stdout
