"""schemathesis in GraphQL mode against a running ``cdms serve``.

The test starts the real server (``cdms serve`` on loopback, a private database holding the
API tests' small shop and a warehouse loaded from it), loads the schema from it by
introspection over HTTP (``schemathesis.graphql.from_url``, as an admin API key) and, for
every root query and mutation field, lets schemathesis (hypothesis-graphql) generate
operations: valid ones with random arguments and random selections (nested connections,
cube members with their arguments), and invalid ones (negative mode: wrong types, missing
required arguments). Each is sent over HTTP (``case.call``) and must come back

- without a 5xx, as a GraphQL JSON object (schemathesis's own response check as well);
- with every error carrying an ``extensions.code`` from the documented set, and never
  ``INTERNAL`` (an unexpected exception, a bug even when masked); an ``INTERNAL`` must
  at least be the masked message with a request id;
- with no traceback or Python source text anywhere in the body.

Valid operations are then run once more as a customer-role key (row-level security and the
guard: FORBIDDEN on other customers, cube queries, models and admin mutations).
Generation is bounded (``EXAMPLES`` per operation and mode) and derandomized, so a CI run
is reproducible; the hand-written fuzz in ``test_fuzz.py`` (junk variables) and the filter
property test in ``test_filter_fuzz.py`` stay beside it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.core.transport import Response
from schemathesis.graphql import nodes
from schemathesis.specs.graphql.schemas import GraphQLSchema

from api.apikeys import create_key
from db.engine import make_engine
from schema.app import schema as app_schema
from schema.errors import INTERNAL_MESSAGE
from tests.api.conftest import build_shop
from tests.cli import cli_environment, run_cdms
from tests.reliability._server import free_port, stop, wait_healthy

EXAMPLES = 30  # per operation and mode: ~2,600 requests, 1.5-2 min on the loaded 2-core machine

# every code an operation of a valid caller can get (docs/api.md "Errors", docs/security.md,
# docs/models.md); the request-level ones (UNAUTHENTICATED, RATE_LIMITED, PAYLOAD_TOO_LARGE,
# PERSISTED_QUERY_*) cannot arise here, so they are not accepted
DOCUMENTED_CODES = frozenset(
    {
        "BAD_USER_INPUT",
        "NOT_FOUND",
        "OUT_OF_STOCK",
        "INVALID_TRANSITION",
        "CONFLICT",
        "FORBIDDEN",
        "QUERY_TOO_COMPLEX",
        "TIMEOUT",
        "SERVICE_UNAVAILABLE",
        "MODEL_UNAVAILABLE",
        "INSUFFICIENT_DATA",
        "NOT_IN_WAREHOUSE",
        "INTERNAL",
    }
)
TRACE_TEXT = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\.py\", line \d+")

# our input scalar without a built-in strategy (Date and DateTime come with schemathesis)
schemathesis.graphql.scalar(
    "Decimal",
    st.one_of(
        st.decimals(min_value=-(10**9), max_value=10**9, places=2, allow_nan=False).map(
            lambda d: nodes.String(str(d))
        ),
        st.sampled_from(["0", "1e400", "-0.001", "abc", ""]).map(nodes.String),
    ),
)


@dataclass(frozen=True)
class Server:
    base: str
    admin_key: str
    customer_key: str
    log: Path  # the server's output: an INTERNAL error's traceback, by its requestId


@pytest.fixture(scope="module")
def server(
    clone_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    url = clone_database("schemathesis")
    engine = make_engine(url)
    with engine.begin() as conn:
        shop = build_shop(conn)
    _, admin_key = create_key(engine, "admin", name="schemathesis admin")
    _, customer_key = create_key(engine, "customer", shop.customers[1], name="schemathesis")
    tmp = tmp_path_factory.mktemp("schemathesis")
    env = cli_environment(url, tmp)
    loaded = run_cdms(env, "etl", "run")
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env.update(CDMS_RATE_LIMIT="0", CDMS_ETL_MODE="off", CDMS_STATEMENT_TIMEOUT_MS="5000")
    cdms = str(Path(sys.executable).parent / "cdms")
    log_path = tmp / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [cdms, "serve", "--port", str(port), "--no-seed-demo"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_healthy(proc, base)
            yield Server(base, admin_key, customer_key, log_path)
        finally:
            stop(proc)


@pytest.fixture(scope="module")
def live_schema(server: Server) -> GraphQLSchema:
    return schemathesis.graphql.from_url(
        f"{server.base}/graphql", headers=_bearer(server.admin_key), timeout=30
    )


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _operations() -> list[tuple[str, str]]:
    """Every root field of the in-process schema; the live one must match it."""
    gql = app_schema._schema
    return [
        (root.name, name)
        for root in (gql.query_type, gql.mutation_type)
        if root is not None
        for name in root.fields
    ]


OPERATIONS = _operations()


def check_response(case: Case[Any], response: Response, log: Path) -> None:
    """The contract for any generated operation, valid or not."""
    where = f"{case.operation.label}\n{case.body!s}\n(server log: {log})"
    assert response.status_code < 500, f"{where}\n{response.status_code} {response.text}"
    assert not TRACE_TEXT.search(response.text), f"{where}\n{response.text}"
    body = response.json()
    assert isinstance(body, dict) and ("data" in body or "errors" in body), f"{where}\n{body}"
    for err in body.get("errors") or []:
        code = (err.get("extensions") or {}).get("code")
        assert code in DOCUMENTED_CODES, f"{where}\nundocumented code: {err}"
        if code == "INTERNAL":
            assert err["message"] == INTERNAL_MESSAGE and err["extensions"].get("requestId"), err
        assert code != "INTERNAL", f"{where}\nan unexpected error (masked): {err}"
        assert "Cannot return null for non-nullable field" not in err["message"], (where, err)
    if case.meta is not None and case.meta.generation.mode is GenerationMode.NEGATIVE:
        # an operation that breaks the schema is refused whole, as the client's error
        codes = {(e.get("extensions") or {}).get("code") for e in body.get("errors") or []}
        assert body.get("data") is None and codes, f"{where}\naccepted: {body}"
        assert codes <= {"BAD_USER_INPUT", "QUERY_TOO_COMPLEX"}, f"{where}\n{body}"
    case.validate_response(
        response, checks=[schemathesis.checks.response_schema_conformance]
    )  # the data matches the published schema


def _fuzz(
    live_schema: GraphQLSchema,
    server: Server,
    session: requests.Session,
    root: str,
    name: str,
    key: str,
    mode: GenerationMode,
) -> None:
    operation = live_schema[root][name]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case[Any]) -> None:
        response = case.call(session=session, headers=_bearer(key), timeout=30)
        check_response(case, response, server.log)

    run()


@pytest.mark.parametrize(("root", "name"), OPERATIONS, ids=[f"{r}.{n}" for r, n in OPERATIONS])
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_admin_operations(
    live_schema: GraphQLSchema,
    server: Server,
    session: requests.Session,
    root: str,
    name: str,
    mode: GenerationMode,
) -> None:
    _fuzz(live_schema, server, session, root, name, server.admin_key, mode)


@pytest.mark.parametrize(("root", "name"), OPERATIONS, ids=[f"{r}.{n}" for r, n in OPERATIONS])
def test_customer_operations(
    live_schema: GraphQLSchema, server: Server, session: requests.Session, root: str, name: str
) -> None:
    """The same as a customer (row-level security, the guard's FORBIDDEN on others' data,
    cube queries and models): valid operations only, the refusals are the point."""
    _fuzz(live_schema, server, session, root, name, server.customer_key, GenerationMode.POSITIVE)


def test_the_live_schema_has_every_operation(live_schema: GraphQLSchema) -> None:
    live = {(root, name) for root in ("Query", "Mutation") for name in live_schema[root]}
    assert live == set(OPERATIONS)
    assert ("Query", "cube") in live and ("Mutation", "placeOrder") in live


def test_every_accepted_code_is_documented() -> None:
    docs = "".join(p.read_text() for p in (Path(__file__).parents[2] / "docs").glob("*.md"))
    assert {c for c in DOCUMENTED_CODES if f"`{c}`" not in docs} == set()
