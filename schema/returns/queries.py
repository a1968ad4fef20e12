"""Query root of returns: `returns(...)`."""

from __future__ import annotations

import strawberry

from schema import catalog
from schema.context import Info
from schema.fields import described
from schema.inputs import ReturnFilter, ReturnOrderBy
from schema.nodes import handle
from schema.returns.types import ReturnConnection, build_return


@strawberry.type
class ReturnQueries:
    @described("Returns matching the filter, one page at a time.")
    def returns(
        self,
        info: Info,
        filter: ReturnFilter | None = None,
        order_by: list[ReturnOrderBy] | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> ReturnConnection:
        h = handle(info, "Query.returns", catalog.RETURN, None, None,
                   build_return, filter, order_by, first, after, last, before)  # fmt: skip
        return ReturnConnection(_h=h)
