"""The parsed documents a process keeps are bounded by their size, not only by their count:
a document of 5,000 tokens (~28 KB) parses into ~1.9 MB of syntax tree, and 512 of them
(the cache's count) kept ~1 GB per worker for 512 distinct requests (docs/security.md)."""

from __future__ import annotations

import gc
import uuid
from pathlib import Path
from typing import Any

from tests.security.conftest import bearer, token

DOCUMENTS = 80


def _rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def _document(i: int) -> str:
    """~28 KB, just under the 5,000-token limit: 1,600 aliased __typename (refused for its
    aliases after it was parsed and validated)."""
    return f"query Q{i} {{ " + " ".join(f"a{k}: __typename" for k in range(1_600)) + " }"


def test_many_large_documents_keep_a_bounded_memory(client: Any) -> None:
    tok = token("analyst", sub="parse-cache")
    headers = bearer(tok)
    client.post("/graphql", json={"query": _document(0)}, headers=headers)  # warm up
    gc.collect()
    before = _rss_mb()
    for i in range(1, DOCUMENTS + 1):
        resp = client.post("/graphql", json={"query": _document(i)}, headers=headers)
        assert resp.status_code in (400, 429), resp.text[:200]
    gc.collect()
    grown = _rss_mb() - before
    # bounded by count only: 80 x ~1.9 MB = ~150 MB; the budget holds 500,000 characters
    # of documents, ~35 MB of trees
    assert grown < 90, f"{grown:.0f} MB more for {DOCUMENTS} documents"


def test_strawberry_keeps_no_long_document(client: Any) -> None:
    """An operation that runs through Strawberry's resolvers (a warehouse field beside a
    relational one) is parsed by Strawberry too: its cache keeps short texts only."""
    from strawberry.extensions.parser_cache import _get_parse_cache

    from schema.app import STRAWBERRY_CACHE_CHARS

    cache = _get_parse_cache(128)
    headers = bearer(token("analyst", sub="strawberry-cache"))
    mixed = "{ warehouseStatus { version } customers(first: 1) { totalCount } }"
    long = f"# {'x' * STRAWBERRY_CACHE_CHARS}\n{mixed}"
    # (looked at by its misses: a cache other tests filled to its 128 grows no more)
    before = cache.cache_info().misses
    resp = client.post("/graphql", json={"query": long}, headers=headers)
    assert resp.status_code == 200 and "errors" not in resp.json(), resp.text[:300]
    assert cache.cache_info().misses == before  # never asked for, never kept
    short = f"# {uuid.uuid4()}\n{mixed}"  # (a text not seen before)
    assert client.post("/graphql", json={"query": short}, headers=headers).status_code == 200
    assert cache.cache_info().misses == before + 1  # parsed once, kept
