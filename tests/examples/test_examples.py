"""examples/ and GraphiQL's example tabs, run against a live ``cdms serve`` (demo data,
warehouse, models) on loopback: they must not drift from the schema."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.reliability._server import free_port, stop, wait_healthy

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def live(
    clone_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`cdms serve` as the README starts it, on a small demo shop (seeded, loaded, trained)."""
    tmp = tmp_path_factory.mktemp("examples")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDMS_")}
    env.update(
        DATABASE_URL=clone_database("examples"),
        CDMS_DATA_DIR=str(tmp / "data"),
        CDMS_DEMO_OPEN="1",
        CDMS_DEMO_CUSTOMERS="300",
        CDMS_DEMO_ORDERS="3000",
    )
    cdms = str(Path(sys.executable).parent / "cdms")
    with (tmp / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            [cdms, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, base, timeout=300, models=True)
        yield base
    finally:
        stop(proc)


def run(cmd: list[str], base: str) -> str:
    env = {**os.environ, "CDMS_URL": base}
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def test_python_client(live: str) -> None:
    out = run([sys.executable, str(EXAMPLES / "client.py")], live)
    assert "300 customers; the 3 newest:" in out
    assert "revenue of the last 3 months" in out
    assert "a bad id is refused with a code: " in out and "BAD_USER_INPUT" in out


def test_javascript_fetch(live: str) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    out = run([node, str(EXAMPLES / "fetch.mjs")], live)
    lines = out.strip().splitlines()
    assert lines[0] == "top categories in Germany by revenue:" and len(lines) >= 3, out


def test_pandas_analysis(live: str) -> None:
    out = run([sys.executable, str(EXAMPLES / "analysis.py")], live)
    assert "consumer" in out and "corporate" in out and "return_rate (%)" in out, out


def test_the_readmes_curl_commands_answer_without_errors(live: str) -> None:
    """Each ``curl … -d '<body>'`` of the README, sent as it is written (a demo-open server:
    the ``Authorization`` header's variable is not set)."""
    readme = (ROOT / "README.md").read_text()
    bodies = re.findall(r"-d '(\{\"query\"[^']+)'", readme)
    assert len(bodies) >= 2, bodies
    for body in bodies:
        r = httpx.post(f"{live}/graphql", json=json.loads(body), timeout=60)
        answer = r.json()
        assert r.status_code == 200 and not answer.get("errors"), (body, answer)
        assert answer["data"], body


def _graphiql_examples() -> list[dict[str, Any]]:
    return list(json.loads((ROOT / "api/graphiql/static/examples.json").read_text()))


def test_graphiql_example_tabs_run_without_errors(live: str) -> None:
    for example in _graphiql_examples():
        if example["query"].lstrip("# \n").startswith("subscription") or (
            "subscription " in example["query"]
        ):
            continue
        r = httpx.post(
            f"{live}/graphql",
            json={"query": example["query"], "variables": example["variables"]},
            timeout=60,
        )
        body = r.json()
        assert r.status_code == 200 and not body.get("errors"), (example["title"], body)
        assert body["data"], example["title"]
    predictions = next(e for e in _graphiql_examples() if "predictOrderStatus" in e["query"])
    data = httpx.post(
        f"{live}/graphql",
        json={"query": predictions["query"], "variables": predictions["variables"]},
        timeout=60,
    ).json()["data"]
    assert data["predictOrderStatus"]["probabilities"]
    assert any(e["node"]["predictedStatus"] for e in data["orders"]["edges"]), data


def test_graphiql_subscription_tab_over_graphql_transport_ws(live: str) -> None:
    example = next(e for e in _graphiql_examples() if "subscription " in e["query"])
    placed = httpx.post(
        f"{live}/graphql",
        json={
            "query": 'mutation { placeOrder(input: {customerId: "1", items: [{productId: "2",'
            " quantity: 1}], channel: WEB, paymentMethod: CARD}) { id customer { id } } }"
        },
        timeout=60,
    ).json()
    order = placed["data"]["placeOrder"]["id"]
    customer = placed["data"]["placeOrder"]["customer"]["id"]
    ws_url = live.replace("http://", "ws://") + "/graphql"
    with connect(ws_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(ws.recv(timeout=10))["type"] == "connection_ack"
        ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": example["query"], "variables": {"customer": customer}},
                }
            )
        )
        time.sleep(0.5)  # subscribed before the change
        r = httpx.post(
            f"{live}/graphql",
            json={
                "query": "mutation($o: ID!) { setOrderStatus(orderId: $o, status: PAID) { id } }",
                "variables": {"o": order},
            },
            timeout=60,
        )
        assert "errors" not in r.json(), r.text
        msg = json.loads(ws.recv(timeout=15))
    assert msg["type"] == "next", msg
    event = msg["payload"]["data"]["orderStatusChanged"]
    assert event["orderId"] == order and event["toStatus"] == "PAID"
