"""Closed sets as GraphQL enums: upper-case names, lower-case database values.

Each member's value is exactly what the database stores, so ``Enum(db_value)`` reads a row
and ``member.value`` binds a parameter.
"""

from __future__ import annotations

import enum

import strawberry


@strawberry.enum(description="Sort direction.")
class SortDirection(enum.Enum):
    ASC = "asc"
    DESC = "desc"


@strawberry.enum(description="pending -> paid -> shipped -> delivered (-> returned); or cancelled.")
class OrderStatus(enum.Enum):
    PENDING = "pending"
    PAID = "paid"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    RETURNED = "returned"


@strawberry.enum(description="Where an order was placed.")
class OrderChannel(enum.Enum):
    WEB = "web"
    MOBILE = "mobile"
    STORE = "store"
    PHONE = "phone"
    MARKETPLACE = "marketplace"


@strawberry.enum
class PaymentMethod(enum.Enum):
    CARD = "card"
    PAYPAL = "paypal"
    BANK_TRANSFER = "bank_transfer"
    CASH_ON_DELIVERY = "cash_on_delivery"
    GIFT_CARD = "gift_card"


@strawberry.enum
class Segment(enum.Enum):
    CONSUMER = "consumer"
    CORPORATE = "corporate"
    HOME_OFFICE = "home_office"


@strawberry.enum
class Gender(enum.Enum):
    FEMALE = "female"
    MALE = "male"
    OTHER = "other"


@strawberry.enum
class FeedbackKind(enum.Enum):
    REVIEW = "review"
    COMPLAINT = "complaint"


@strawberry.enum
class ReturnReason(enum.Enum):
    DAMAGED = "damaged"
    DEFECTIVE = "defective"
    WRONG_ITEM = "wrong_item"
    NOT_AS_DESCRIBED = "not_as_described"
    TOO_SMALL = "too_small"
    TOO_LARGE = "too_large"
    LATE_DELIVERY = "late_delivery"
    CHANGED_MIND = "changed_mind"


@strawberry.enum(description="requested -> approved | rejected.")
class ReturnStatus(enum.Enum):
    REQUESTED = "requested"
    APPROVED = "approved"
    REJECTED = "rejected"


@strawberry.enum
class TicketCategory(enum.Enum):
    DELIVERY = "delivery"
    PAYMENT = "payment"
    PRODUCT = "product"
    RETURN = "return"
    ACCOUNT = "account"
    OTHER = "other"


@strawberry.enum
class TicketPriority(enum.Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    URGENT = "urgent"


@strawberry.enum
class TicketChannel(enum.Enum):
    EMAIL = "email"
    PHONE = "phone"
    CHAT = "chat"
    WEB = "web"


@strawberry.enum(description="open -> in_progress -> resolved -> closed (closed is final).")
class TicketStatus(enum.Enum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"
