"""The planted relations: every share and every log-odds coefficient the generator uses.

Kept in one place so ``docs/data.md`` can quote them and issue 6 (models) knows what it
should be able to learn. Log-odds add up: ``p = 1 / (1 + exp(-(base + sum of effects)))``.
"""

from __future__ import annotations

from typing import Final

# --- customers -----------------------------------------------------------------------------
SEGMENTS: Final = ("consumer", "corporate", "home_office")
SEGMENT_SHARES: Final = (0.60, 0.25, 0.15)
# relative order frequency per customer (multiplies a gamma(0.7) activity draw)
SEGMENT_ACTIVITY: Final = (1.0, 1.6, 1.2)
GENDERS: Final = ("female", "male", "other")
GENDER_SHARES: Final = (0.49, 0.49, 0.02)

# --- orders --------------------------------------------------------------------------------
CHANNELS: Final = ("web", "mobile", "store", "phone", "marketplace")
# channel shares per segment (rows follow SEGMENTS)
CHANNEL_SHARES: Final = (
    (0.42, 0.30, 0.12, 0.03, 0.13),
    (0.50, 0.08, 0.07, 0.25, 0.10),
    (0.50, 0.20, 0.10, 0.08, 0.12),
)
PAYMENTS: Final = ("card", "paypal", "bank_transfer", "cash_on_delivery", "gift_card")
# payment shares per channel (rows follow CHANNELS)
PAYMENT_SHARES: Final = (
    (0.50, 0.28, 0.08, 0.06, 0.08),
    (0.52, 0.34, 0.03, 0.05, 0.06),
    (0.85, 0.03, 0.00, 0.00, 0.12),
    (0.35, 0.00, 0.35, 0.25, 0.05),
    (0.45, 0.25, 0.08, 0.20, 0.02),
)
# corporate customers pay by bank transfer three times as often (then renormalised)
CORPORATE_BANK_TRANSFER_FACTOR: Final = 3.0

# lines per order (1..6) per segment; store orders use the consumer row shifted to 1 line
LINES_SHARES: Final = (
    (0.45, 0.25, 0.14, 0.08, 0.05, 0.03),
    (0.22, 0.20, 0.18, 0.16, 0.13, 0.11),
    (0.35, 0.25, 0.17, 0.11, 0.07, 0.05),
)
STORE_LINES_SHARES: Final = (0.70, 0.20, 0.07, 0.03, 0.0, 0.0)
# quantity per line: values and shares per segment (mostly 1-2; corporate buys in bulk)
QUANTITIES: Final = (1, 2, 3, 4, 5, 10)
QUANTITY_SHARES: Final = (
    (0.74, 0.19, 0.04, 0.02, 0.01, 0.00),
    (0.45, 0.25, 0.10, 0.08, 0.07, 0.05),
    (0.60, 0.22, 0.08, 0.05, 0.03, 0.02),
)
# share of orders with a coupon (percent off every line), and on Black Friday week
DISCOUNT_SHARE: Final = 0.14
DISCOUNT_SHARE_BLACK_FRIDAY: Final = 0.45
DISCOUNT_PERCENTS: Final = (5, 10, 15, 20, 25)
DISCOUNT_PERCENT_SHARES: Final = (0.30, 0.35, 0.15, 0.15, 0.05)

# seasonality of order dates
MONTH_FACTORS: Final = (0.85, 0.80, 0.90, 0.90, 0.95, 0.95, 0.90, 0.90, 0.95, 1.00, 1.45, 1.70)
WEEKDAY_FACTORS: Final = (1.05, 1.00, 1.00, 1.00, 0.95, 0.90, 1.10)  # Monday first
BLACK_FRIDAY_FACTOR: Final = 1.8  # Friday after the 4th Thursday of November .. Cyber Monday
YEARLY_GROWTH: Final = 1.25
HOUR_WEIGHTS: Final = (
    1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 4, 4.5, 5,
    5.5, 5, 4.5, 4.5, 4.5, 5, 5.5, 6.5, 7, 6, 4, 2,
)  # fmt: skip

# --- cancellation (log-odds, per order that reaches its decision) ------------------------
CANCEL_BASE: Final = -3.6  # card, web, repeat customer: about 2.7 %
CANCEL_PAYMENT: Final = {
    "card": 0.0,
    "paypal": 0.2,
    "bank_transfer": 1.4,
    "cash_on_delivery": 1.7,
    "gift_card": -0.3,
}
CANCEL_FIRST_ORDER: Final = 0.9
CANCEL_CHANNEL: Final = {
    "web": 0.0,
    "mobile": 0.1,
    "store": -1.0,
    "phone": -0.2,
    "marketplace": 0.8,
}

# --- delivery ------------------------------------------------------------------------------
LATE_AFTER_DAYS: Final = 5.0  # shipped -> delivered longer than this is a late delivery
LATE_SHARE: Final = 0.07  # share of shipments with an extra 3-10 days of delay
LATE_SHARE_PEAK: Final = 0.16  # in November and December

# --- returns (log-odds, per delivered order line) -------------------------------------------
RETURN_BASE: Final = -3.3
RETURN_LATE: Final = 1.0
RETURN_CUSTOMER_SD: Final = 1.3  # a customer's persistent propensity: prior returns predict
RETURN_APPROVE_SHARE: Final = 0.85
RETURN_APPROVE_SHARE_CHANGED_MIND: Final = 0.55

# --- feedback ------------------------------------------------------------------------------
FEEDBACK_SHARE: Final = 0.22
FEEDBACK_SHARE_LATE: Final = 0.40
COMPLAINT_SHARE: Final = 0.07
COMPLAINT_SHARE_LATE: Final = 0.38
COMPLAINT_SHARE_RETURNED: Final = 0.25
REVIEW_RATING_SHARES: Final = (0.03, 0.05, 0.12, 0.35, 0.45)
REVIEW_RATING_SHARES_LATE: Final = (0.14, 0.17, 0.26, 0.25, 0.18)
COMPLAINT_RATING_SHARES: Final = (0.55, 0.30, 0.12, 0.03, 0.0)

# --- support tickets -----------------------------------------------------------------------
TICKET_CATEGORIES: Final = ("delivery", "payment", "product", "return", "account", "other")
PRIORITIES: Final = ("low", "medium", "high", "urgent")
TICKET_CHANNELS: Final = ("email", "phone", "chat", "web")
TICKET_CHANNEL_SHARES: Final = (0.40, 0.20, 0.25, 0.15)
TICKET_CHANNEL_SHARES_URGENT: Final = (0.20, 0.50, 0.22, 0.08)
PRIORITY_SHARES: Final = {
    "delivery": (0.15, 0.45, 0.30, 0.10),
    "payment": (0.10, 0.40, 0.35, 0.15),
    "product": (0.25, 0.45, 0.22, 0.08),
    "return": (0.20, 0.50, 0.25, 0.05),
    "account": (0.30, 0.45, 0.20, 0.05),
    "other": (0.45, 0.40, 0.12, 0.03),
}
# ticket chances per source
TICKET_LATE_DELIVERY: Final = 0.30
TICKET_ANY_SHIPMENT: Final = 0.015
TICKET_RETURN: Final = 0.25
TICKET_CANCELLED: Final = 0.15
TICKET_SLOW_PAYMENT: Final = 0.03  # bank transfer / cash on delivery orders
TICKET_PRODUCT: Final = 0.012
TICKET_ACCOUNT_PER_CUSTOMER: Final = 0.12  # Poisson means over the customer's lifetime
TICKET_OTHER_PER_CUSTOMER: Final = 0.08
# outcome: log-odds that a ticket ends resolved (resolved or closed) rather than stuck
RESOLVE_BASE: Final = 1.0
RESOLVE_PRIORITY: Final = {"low": -0.7, "medium": 0.0, "high": 0.5, "urgent": 1.0}
RESOLVE_CATEGORY: Final = {
    "delivery": 0.3,
    "payment": 0.4,
    "product": -0.3,
    "return": 0.5,
    "account": 0.6,
    "other": -1.8,
}
RESOLVE_CHANNEL: Final = {"email": -0.7, "phone": 0.8, "chat": 0.3, "web": -0.2}
RESOLVE_URGENT_PHONE: Final = 0.6
# median hours to resolution per priority; channel multiplies
RESOLVE_HOURS: Final = {"low": 60.0, "medium": 30.0, "high": 12.0, "urgent": 4.0}
RESOLVE_CHANNEL_SPEED: Final = {"email": 1.5, "phone": 0.5, "chat": 0.8, "web": 1.2}

# --- churn ---------------------------------------------------------------------------------
# A share of customers lapse: each gets a lapse time, uniform from 90 days after they could
# first order until a year after the window ends (so some have not lapsed yet). Over the
# FADE_DAYS before it their order rate falls to zero as the square of the time left (the
# gaps between orders lengthen), and after it they never order again.
CHURN_SHARE: Final = 0.40
CHURN_FADE_DAYS: Final = 240
CHURN_EARLIEST_DAYS: Final = 90
CHURN_LATEST_AFTER_END_DAYS: Final = 365
