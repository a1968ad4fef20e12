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
    held = sum(len(entry.statements) for entry in reads._cache.values())
    assert held <= CACHE_SIZE, f"{held} statements kept for one query"  # today: 1,503
