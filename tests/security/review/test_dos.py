"""CPU a small document costs before it is refused (docs/security.md: "How each measure
stays linear in the document").

The pipeline runs graphql-core's whole validation before its own linear measures. One of
its rules, OverlappingFieldsCanBeMerged, compares every pair of fields sharing a response
key: quadratic in the document, until graphql-core's own budget of 500,000 units aborts it
("Validation aborted."). A 4.5 KB document that repeats ``products { totalCount }`` 900
times (4,500 tokens, under the 5,000 limit) spends the whole budget: about 2 s of CPU in a
worker thread holding the GIL. Measured on the shared 2-core machine (load 4-5): eight such
requests from one customer key (the production burst is 100) took 12.7 s together and
stalled ``/healthz`` for 3.7 s (median) to 6.9 s. Varying a space defeats the parse cache.

The work is counted here in graphql-core's own units (``spend_complexity_budget``), not
timed: checking a document must cost at most a small multiple of its tokens.
"""

from __future__ import annotations

from typing import Any

import graphql.validation.rules.overlapping_fields_can_be_merged as overlapping
import pytest

from tests.security.conftest import Parties, bearer, token
from tests.security.review.conftest import code_of

TOKENS = 4_500


@pytest.mark.parametrize(
    "query",
    [
        "{ " + "products { totalCount } " * 900 + "}",
        "{ " + "products { edges { node { id } } } " * 450 + "}",
    ],
)
def test_validating_a_small_document_is_linear_work(
    prod: Any, parties: Parties, monkeypatch: pytest.MonkeyPatch, query: str
) -> None:
    spent = [0]
    original = overlapping.spend_complexity_budget

    def counting(context: Any, cost: int) -> None:
        spent[0] += cost
        original(context, cost)

    monkeypatch.setattr(overlapping, "spend_complexity_budget", counting)
    resp = prod.post(
        "/graphql", json={"query": query}, headers=bearer(token("customer", parties.a))
    )
    assert resp.status_code in (200, 400), resp.text
    assert code_of(resp.json()) in (None, "QUERY_TOO_COMPLEX", "BAD_USER_INPUT")
    assert spent[0] <= 10 * TOKENS, f"{spent[0]} units of validation work"  # today: 500,000+
