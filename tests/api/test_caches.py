"""The parser and validation caches hit for a repeated query (they are per-process LRUs)."""

from __future__ import annotations

from strawberry.extensions.parser_cache import _get_parse_cache
from strawberry.extensions.validation_cache import _get_validate_cache

from schema.app import schema


def test_a_repeated_query_is_parsed_and_validated_once() -> None:
    query = "query CacheProbe { __typename probe: __typename }"
    parse_cache = _get_parse_cache(256)
    validate_cache = _get_validate_cache(256)
    first = schema.execute_sync(query)
    assert first.errors is None
    parsed, validated = parse_cache.cache_info(), validate_cache.cache_info()
    for _ in range(3):
        again = schema.execute_sync(query)
        assert again.errors is None and again.data == {"__typename": "Query", "probe": "Query"}
    assert parse_cache.cache_info().hits == parsed.hits + 3
    assert validate_cache.cache_info().hits == validated.hits + 3
    assert validate_cache.cache_info().misses == validated.misses
