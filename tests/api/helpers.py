"""Small helpers for reading GraphQL responses in the API tests."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine


def nodes(conn: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["node"] for e in conn["edges"]]


def ids(conn: dict[str, Any]) -> list[int]:
    return [int(n["id"]) for n in nodes(conn)]


def data(body: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in body, body["errors"]
    out: dict[str, Any] = body["data"]
    return out


def codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


def sql_ids(engine: Engine, query: str, **params: Any) -> list[int]:
    with engine.connect() as conn:
        return [int(r[0]) for r in conn.execute(sa.text(query), params)]


def sql_one(engine: Engine, query: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.text(query), params).one()


def demo_client(engine: Engine, compiled: bool) -> Any:
    """A TestClient of the app as served (secured endpoint, demo-open, no cost limit), on
    the compiled read path or on Strawberry's."""
    from tests.api.conftest import make_client

    return make_client(engine, compiled)


def body_of(resp: Any) -> dict[str, Any]:
    """The JSON body of a /graphql answer: 200, or a 4xx for an operation refused for what
    it asked, before or while it ran (then no data and coded errors: schema.execute.REFUSED)."""
    assert resp.status_code in (200, 400, 403, 404, 409), resp.text
    body: dict[str, Any] = resp.json()
    if resp.status_code != 200:
        assert body["data"] is None and codes(body), body
    return body


def post(client: Any, query: str, variables: dict[str, Any] | None) -> dict[str, Any]:
    """POST /graphql; the JSON body (see :func:`body_of`)."""
    return body_of(client.post("/graphql", json={"query": query, "variables": variables or {}}))


def model_runs(engine: Engine) -> dict[str, int]:
    """onnxruntime runs so far, per loaded model of the engine's store."""
    from ml.serving import store_for

    store = store_for(engine)
    return {name: store.get(name).runs for name in store.loaded()}


def lane_prepared(engine: Engine) -> list[tuple[str, int, int]]:
    """(statement, generic plans, custom plans) of what is prepared on a connection of
    the fast lane's pool (``db.engine.unpinged``; the lane's checkouts take the same ones)."""
    from db.engine import unpinged

    fairy = unpinged(engine).raw_connection()
    try:
        cur = fairy.cursor()
        cur.execute("SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements")
        return [(str(s), int(g), int(c)) for s, g, c in cur.fetchall()]
    finally:
        fairy.close()
