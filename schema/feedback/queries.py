"""Query root of feedback: `feedback(...)`."""

from __future__ import annotations

import strawberry

from schema import catalog
from schema.context import Info
from schema.feedback.types import FeedbackConnection, build_feedback
from schema.fields import described
from schema.inputs import FeedbackFilter, FeedbackOrderBy
from schema.nodes import handle


@strawberry.type
class FeedbackQueries:
    @described("Feedbacks matching the filter, one page at a time.")
    def feedback(
        self,
        info: Info,
        filter: FeedbackFilter | None = None,
        order_by: list[FeedbackOrderBy] | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> FeedbackConnection:
        h = handle(info, "Query.feedback", catalog.FEEDBACK, None, None,
                   build_feedback, filter, order_by, first, after, last, before)  # fmt: skip
        return FeedbackConnection(_h=h)
