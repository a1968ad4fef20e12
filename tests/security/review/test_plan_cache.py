"""The plan cache must stay bounded whatever a client sends (schema/execute.py, Reads).

Its LRU bounds the number of (query, operation, variable structure) entries to
``CACHE_SIZE``, but each entry keeps one statement per combination of the values the SQL
text depends on (page sizes, orderBy, @include) in a plain dict that nothing trims. One
customer's query with 30 aliased connections whose page sizes are variables is one entry;
each request with other page sizes adds a ~39 KB statement to it (measured: 500 such
requests retained 20.7 MB), so at the production rate limit (50/s) one customer grows a
worker by about 1 GB every 8-9 minutes, until it is killed.
"""

from __future__ import annotations

import gc
import tracemalloc

from graphql import OperationType
from sqlalchemy.engine import Engine

from api.auth import Principal
from api.pipeline import Operation, Pipeline, Policy
from schema.app import graphql_schema
from schema.context import ApiLimits
from schema.execute import CACHE_SIZE, Reads


def test_statements_held_by_the_plan_cache_are_bounded(sec_engine: Engine) -> None:
    gschema = graphql_schema()
    pipeline = Pipeline(gschema, sec_engine, Policy())
    reads = Reads(gschema, ApiLimits())
    customer = Principal("customer", 7, "customer:7", "customer:7")
    query = """query ($n: Int, $m: Int) {
      orders(first: $n) { edges { node { id } } }
      products(first: $m) { totalCount }
    }"""
    for n in range(501):
        for m in range(3):
            op = Operation(query, {"n": n, "m": m})
            prepared = pipeline.check(query, op, customer, (OperationType.QUERY,))
            reads.query_statement(
                prepared.query, prepared.document, prepared.operation, prepared.coerced
            )
    held = len(reads)
    assert held <= CACHE_SIZE, f"{held} statements kept for one query"  # today: 1,503


def test_large_statements_take_the_room_of_many(sec_engine: Engine) -> None:
    """Each filter shape is its own statement: 400 shapes of a few hundred conditions are
    ~400 statements of 10-40 KB (a hostile test grew a worker 19 MB a request this way).
    They are held by their size: a 4 KB share each, within CACHE_SIZE shares."""
    gschema = graphql_schema()
    pipeline = Pipeline(gschema, sec_engine, Policy())
    reads = Reads(gschema, ApiLimits())
    customer = Principal("customer", 7, "customer:7", "customer:7")
    query = "query ($f: OrderFilter) { orders(first: 1, filter: $f) { totalCount } }"
    sizes = []
    for n in range(100, 500):
        op = Operation(query, {"f": {"or": [{"totalAmount": {"gte": "1"}}] * n}})
        prepared = pipeline.check(query, op, customer, (OperationType.QUERY,))
        stmt = reads.query_statement(
            prepared.query, prepared.document, prepared.operation, prepared.coerced
        )
        sizes.append(len(stmt.sql))
    assert min(sizes) > 4096, sizes[:3]
    assert reads.held <= CACHE_SIZE and len(reads) < 400, (reads.held, len(reads))


def test_in_lists_of_any_length_share_one_statement(sec_engine: Engine) -> None:
    """An `in` list is one bound array: a client that sends 1, 2 ... 300 ids compiles one
    statement, not one per length (each a miss and a copy in the cache)."""
    gschema = graphql_schema()
    pipeline = Pipeline(gschema, sec_engine, Policy())
    reads = Reads(gschema, ApiLimits())
    admin = Principal("admin", None, "admin", "admin")
    query = "query ($ids: [ID!]) { orders(filter: {id: {in: $ids}}) { totalCount } }"
    for n in range(1, 301):
        op = Operation(query, {"ids": [str(i) for i in range(n)]})
        prepared = pipeline.check(query, op, admin, (OperationType.QUERY,))
        reads.query_statement(
            prepared.query, prepared.document, prepared.operation, prepared.coerced
        )
    assert len(reads) == 1


def test_query_texts_count_against_the_plan_cache(sec_engine: Engine) -> None:
    """The cache keys on the query text: 300 texts of ~64 KB (a comment, new each request,
    within the body limit and the token limit) were kept whole, 1,024 of them (64 MB) at
    most whatever their statements' size. A key counts by its size like a statement."""
    gschema = graphql_schema()
    reads = Reads(gschema, ApiLimits())
    customer = Principal("customer", 7, "customer:7", "customer:7")

    def ask(i: int) -> None:
        query = f"query {{ products(first: 1) {{ totalCount }} }}\n# {i:06d}" + "x" * 64_000
        pipeline = Pipeline(gschema, sec_engine, Policy())  # its parse cache goes with it
        prepared = pipeline.check(query, Operation(query, {}), customer, (OperationType.QUERY,))
        reads.query_statement(
            prepared.query, prepared.document, prepared.operation, prepared.coerced
        )

    ask(-1)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(300):
            ask(i)
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < CACHE_SIZE * 4096 * 2, f"{kept:,} B kept"  # was 19.7 MB
    assert reads.held <= CACHE_SIZE
