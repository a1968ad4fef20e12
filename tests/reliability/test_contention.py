"""50 concurrent ``placeOrder`` calls over HTTP (a real uvicorn on loopback, bearer
tokens, row-level security on) for a product with 10 units: exactly 10 are sold, the others
are refused with OUT_OF_STOCK, stock never goes negative and every accepted order is whole."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from api.auth import encode_jwt
from db.engine import make_engine
from tests.api.conftest import build_shop

SECRET = "reliability-secret-0123456789-abcdef"
STOCK = 10
CALLS = 50
PLACE = """mutation ($c: ID!, $p: ID!) { placeOrder(input: {customerId: $c, channel: WEB,
  paymentMethod: CARD, items: [{productId: $p, quantity: 1}]}) { id status itemCount } }"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(clone_database: Callable[[str], str]) -> Iterator[tuple[str, str]]:
    url = clone_database("contention")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDMS_")}
    env.update(DATABASE_URL=url, CDMS_JWT_SECRET=SECRET, CDMS_RATE_LIMIT="0")
    code = (
        "import uvicorn; from api.app import create_app; from db.engine import make_engine; "
        f"uvicorn.run(create_app(make_engine({url!r})), host='127.0.0.1', port={port},"
        " log_level='warning')"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "server exited"
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        yield base, url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_scarce_stock_is_never_oversold(server: tuple[str, str]) -> None:
    base, url = server
    engine = make_engine(url)
    with engine.begin() as conn:
        shop = build_shop(conn)
        product = int(
            conn.execute(
                sa.text(
                    "INSERT INTO app.products (sku, name, category, subcategory, brand,"
                    " unit_price, cost, stock) VALUES ('SCARCE-1', 'Scarce', 'c', 's', 'b', 5, 1,"
                    " :stock) RETURNING id"
                ),
                {"stock": STOCK},
            ).scalar_one()
        )
    customers = shop.customers
    exp = int(time.time()) + 600
    tokens = [
        encode_jwt({"role": "customer", "customer_id": c, "exp": exp}, SECRET) for c in customers
    ]

    async def one(i: int, client: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
        k = i % len(customers)
        resp = await client.post(
            f"{base}/graphql",
            json={"query": PLACE, "variables": {"c": str(customers[k]), "p": str(product)}},
            headers={"Authorization": f"Bearer {tokens[k]}"},
        )
        return resp.status_code, resp.json()

    async def burst() -> list[tuple[int, dict[str, Any]]]:
        limits = httpx.Limits(max_connections=CALLS)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            return await asyncio.gather(*(one(i, client) for i in range(CALLS)))

    results = asyncio.run(burst())
    # (an order refused for want of stock placed nothing: 409)
    assert all(status == (200 if "errors" not in body else 409) for status, body in results), [
        s for s, _ in results
    ]
    outcome = Counter(
        "ok" if "errors" not in body else body["errors"][0]["extensions"]["code"]
        for _, body in results
    )
    assert outcome == {"ok": STOCK, "OUT_OF_STOCK": CALLS - STOCK}, outcome
    accepted = [
        int(body["data"]["placeOrder"]["id"]) for _, body in results if "errors" not in body
    ]
    with engine.connect() as conn:
        stock = conn.execute(
            sa.text("SELECT stock FROM app.products WHERE id = :p"), {"p": product}
        ).scalar_one()
        whole = conn.execute(
            sa.text(
                "SELECT count(*) FROM app.orders o WHERE o.id = ANY(:ids) AND o.item_count = 1"
                " AND o.created_by = 'customer:' || o.customer_id"
                " AND EXISTS (SELECT 1 FROM app.order_items i WHERE i.order_id = o.id"
                "             AND i.product_id = :p AND i.quantity = 1)"
                " AND EXISTS (SELECT 1 FROM app.order_status_history h WHERE h.order_id = o.id)"
            ),
            {"ids": accepted, "p": product},
        ).scalar_one()
        sold = conn.execute(
            sa.text("SELECT coalesce(sum(quantity), 0) FROM app.order_items WHERE product_id = :p"),
            {"p": product},
        ).scalar_one()
    assert stock == 0 and sold == STOCK and whole == STOCK
