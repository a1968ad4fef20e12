"""``submitFeedback``: a plain INSERT INTO app.feedback (constraints hold the rules)."""

from __future__ import annotations

import strawberry

from schema import catalog, tables
from schema.context import Info
from schema.enums import FeedbackKind
from schema.feedback.types import Feedback, build_feedback
from schema.filters import parse_id
from schema.writes import insert_returning_id, write_and_read


@strawberry.input
class SubmitFeedbackInput:
    customer_id: strawberry.ID
    rating: int
    kind: FeedbackKind = FeedbackKind.REVIEW
    order_id: strawberry.ID | None = None
    product_id: strawberry.ID | None = None
    comment: str | None = None


@strawberry.type
class FeedbackMutations:
    @strawberry.mutation
    async def submit_feedback(self, info: Info, input: SubmitFeedbackInput) -> Feedback:
        values = {
            "customer_id": parse_id(input.customer_id, "customerId"),
            "order_id": None if input.order_id is None else parse_id(input.order_id, "orderId"),
            "product_id": (
                None if input.product_id is None else parse_id(input.product_id, "productId")
            ),
            "kind": input.kind.value,
            "rating": input.rating,
            "comment": input.comment,
        }
        write = insert_returning_id(tables.feedback, values)
        return await write_and_read(info, write, catalog.FEEDBACK, build_feedback)
