"""A decimal that is not a finite number (a literal ``1e400``, a variable ``NaN``,
``Infinity`` or ``1e400``: Python's JSON reads all of them) is BAD_USER_INPUT (HTTP 400)
on every transport, its value told as text. Its refusal carried the float itself, which
JSON cannot hold: the answer failed to render, a 500 (the hostile review)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from tests.security.conftest import bearer, token
from tests.security.transports import TRANSPORTS, run_over

LITERAL = "{ orders(first: 1, filter: {totalAmount: {gt: 1e400}}) { totalCount } }"
VARIABLE = """query ($p: Decimal!) {
  orders(first: 1, filter: {totalAmount: {gt: $p}}) { totalCount } }"""


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("value", [None, math.nan, math.inf, -math.inf], ids=str)
def test_a_decimal_that_is_no_finite_number_is_bad_input(
    prod: Any, sec_engine: Engine, transport: str, value: float | None
) -> None:
    if value is None:
        out = run_over(transport, prod, sec_engine, bearer(token("admin")), LITERAL)
    else:
        out = run_over(transport, prod, sec_engine, bearer(token("admin")), VARIABLE, {"p": value})
    assert out.codes == ["BAD_USER_INPUT"], out
    assert out.data is None or out.data.get("orders") is None, out
    if out.status is not None:
        assert out.status == 400, out
