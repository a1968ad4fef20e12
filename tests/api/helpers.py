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
