"""What happens after delivery: returns, feedback and support tickets.

Every row is drawn from the order lifecycle in ``orders.py`` and cut at ``now`` like it.
The planted effects (late delivery → returns, complaints, tickets; category → returns;
priority/category/channel → ticket outcome) use the coefficients in ``relations.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from db.seed import copy as c
from db.seed import relations as r
from db.seed.catalog import CATEGORIES, RETURN_REASONS, Catalog
from db.seed.copy import NEVER, BoolArray, IntArray, Table
from db.seed.draw import by_group, lognormal, sigmoid
from db.seed.orders import HOUR, Orders
from db.seed.people import DAY, People

RETURN_STATUSES = ("requested", "approved", "rejected")
TICKET_STATUSES = ("open", "in_progress", "resolved", "closed")
_CHANGED_MIND = RETURN_REASONS.index("changed_mind")
_LATE_REASON = RETURN_REASONS.index("late_delivery")

_RETURN_COMMENTS = (
    "Arrived with a dent in the box.",
    "Stopped working after two days.",
    "Not the item I ordered.",
    "Colour is different from the pictures.",
    "Too small, I need one size up.",
    "Too large, I need one size down.",
    "It arrived too late for the occasion.",
    "I found a better fit elsewhere.",
)
_REVIEWS = {
    1: ("Very disappointed.", "Would not buy again.", "Poor quality for the price."),
    2: ("Below expectations.", "Works, but feels cheap.", "Not great, not terrible."),
    3: ("Okay for the price.", "Does the job.", "Average product, average delivery."),
    4: ("Good value.", "Happy with it.", "Nice quality, quick delivery."),
    5: ("Excellent!", "Exactly as described, love it.", "Great product, will order again."),
}
_COMPLAINTS = (
    "The parcel arrived a week late.",
    "Delivery took far longer than promised.",
    "Item was damaged on arrival.",
    "Customer service never answered my e-mail.",
    "The refund is taking too long.",
    "Wrong item in the parcel.",
)
_SUBJECTS = {
    "delivery": ("Where is my order?", "Parcel has not arrived", "Tracking not updating"),
    "payment": ("Payment not received", "Charged twice", "Refund status", "Invoice request"),
    "product": ("Product stopped working", "Missing parts", "Question about warranty"),
    "return": ("Return label needed", "Refund not received yet", "Exchange for another size"),
    "account": ("Cannot log in", "Change my e-mail address", "Delete my account"),
    "other": ("General question", "Feedback about the shop", "Partnership enquiry"),
}


@dataclass(frozen=True)
class Returns:
    order: IntArray
    line: IntArray  # index into the order lines
    reason: IntArray
    quantity: IntArray
    status: IntArray  # index into RETURN_STATUSES
    requested: IntArray
    decided: IntArray
    refund: IntArray  # cents (approved only)
    returned_at: IntArray  # per order: when the last unit came back, or NEVER


def make_returns(
    rng: np.random.Generator, o: Orders, people: People, catalog: Catalog, now: int
) -> Returns:
    lo = o.line_order
    candidates = np.flatnonzero(o.delivered[lo] != NEVER)
    cand_order = lo[candidates]
    cat = catalog.category[o.product[candidates]]
    effect = np.array([k.return_effect for k in CATEGORIES])[cat]
    logit = (
        r.RETURN_BASE
        + effect
        + r.RETURN_LATE * o.late[cand_order]
        + people.return_propensity[o.customer[cand_order]]
    )
    wants = rng.random(candidates.size) < sigmoid(logit)
    wait = np.minimum(lognormal(rng, 5.0 * DAY, 0.7, candidates.size), 30 * DAY)
    requested = o.delivered[cand_order] + np.maximum(wait, HOUR).astype(np.int64)
    keep = wants & (requested <= now)
    line = candidates[keep]
    order = lo[line]
    requested = requested[keep]
    n = line.size

    reason = by_group(rng, cat[keep], np.array([k.return_reasons for k in CATEGORIES]))
    late_reason = o.late[order] & (rng.random(n) < 0.35)
    reason = np.where(late_reason, _LATE_REASON, reason)
    bought = o.quantity[line]
    partial = (bought > 1) & (rng.random(n) < 0.3)
    quantity = np.where(partial, rng.integers(1, np.maximum(bought, 2)), bought)

    decided = requested + np.maximum(lognormal(rng, 2.0 * DAY, 0.6, n), 60).astype(np.int64)
    decided = np.where(decided <= now, decided, NEVER)
    approve_share = np.where(
        reason == _CHANGED_MIND, r.RETURN_APPROVE_SHARE_CHANGED_MIND, r.RETURN_APPROVE_SHARE
    )
    approved = (decided != NEVER) & (rng.random(n) < approve_share)
    status = np.select([decided == NEVER, approved], [0, 1], 2)
    line_total = o.line_total[line]
    refund = (line_total * quantity * 2 + bought) // (2 * bought)  # round half up

    # an order whose every unit came back (approved) is 'returned' when the last one is decided
    approved_units = np.bincount(order[approved], weights=quantity[approved], minlength=o.size)
    returned_at = np.full(o.size, np.iinfo(np.int64).min)
    np.maximum.at(returned_at, order[approved], decided[approved])
    all_back = approved_units.astype(np.int64) == o.item_count
    returned_at = np.where(all_back & (returned_at > 0), returned_at, NEVER)

    sort = np.argsort(requested, kind="stable")
    return Returns(
        order=order[sort],
        line=line[sort],
        reason=reason[sort],
        quantity=quantity[sort],
        status=status[sort],
        requested=requested[sort],
        decided=decided[sort],
        refund=refund[sort],
        returned_at=returned_at,
    )


def returns_table(rng: np.random.Generator, o: Orders, ret: Returns) -> Table:
    n = ret.order.size
    comment = np.where(rng.random(n) < 0.4, ret.reason, -1)
    updated = np.where(ret.decided == NEVER, ret.requested, ret.decided)
    decided_by = np.where(ret.decided == NEVER, -1, 0)
    return Table(
        "app.returns",
        (
            "id", "order_id", "line_no", "customer_id", "reason", "quantity", "status",
            "refund_amount", "comment", "requested_at", "decided_at", "requested_by",
            "decided_by", "created_at", "updated_at",
        ),
        (
            c.ints(np.arange(1, n + 1)), c.ints(ret.order + 1), c.ints(o.line_no[ret.line]),
            c.ints(o.customer[ret.order] + 1), c.pick(RETURN_REASONS, ret.reason),
            c.ints(ret.quantity), c.pick(RETURN_STATUSES, ret.status),
            c.money_or_null(ret.refund, ret.status == 1),
            c.pick_or_null(_RETURN_COMMENTS, comment), c.timestamps(ret.requested),
            c.timestamps(ret.decided), c.constant("seed", n), c.pick_or_null(["seed"], decided_by),
            c.timestamps(ret.requested), c.timestamps(updated),
        ),
    )  # fmt: skip


def feedback_table(rng: np.random.Generator, o: Orders, ret: Returns, now: int) -> Table:
    """Reviews and complaints about delivered orders; late deliveries rate lower."""
    m = o.size
    had_return = np.zeros(m, dtype=bool)
    had_return[ret.order] = True
    share = np.select([o.late, had_return], [r.FEEDBACK_SHARE_LATE, 0.35], r.FEEDBACK_SHARE)
    created = o.delivered + np.where(
        o.delivered == NEVER, 0, lognormal(rng, 3.0 * DAY, 0.8, m).astype(np.int64)
    )
    gives = (o.delivered != NEVER) & (rng.random(m) < share) & (created <= now)
    order = np.flatnonzero(gives)
    order = order[np.argsort(created[order], kind="stable")]  # ids ascend with created_at
    n = order.size
    late = o.late[order]
    complaint_share = np.select(
        [late, had_return[order]], [r.COMPLAINT_SHARE_LATE, r.COMPLAINT_SHARE_RETURNED],
        r.COMPLAINT_SHARE,
    )  # fmt: skip
    complaint = rng.random(n) < complaint_share
    group = np.select([complaint, late], [2, 1], 0)
    shares = np.array(
        [r.REVIEW_RATING_SHARES, r.REVIEW_RATING_SHARES_LATE, r.COMPLAINT_RATING_SHARES]
    )
    rating = 1 + by_group(rng, group, shares)
    line = o.line_start[order] + (rng.random(n) * o.n_lines[order]).astype(np.int64)
    product = o.product[line]
    texts = [*_COMPLAINTS, *(t for k in range(1, 6) for t in _REVIEWS[k])]
    review_index = len(_COMPLAINTS) + (rating - 1) * 3 + rng.integers(0, 3, n)
    text = np.where(complaint, rng.integers(0, len(_COMPLAINTS), n), review_index)
    text = np.where(rng.random(n) < 0.15, -1, text)
    t = created[order]
    return Table(
        "app.feedback",
        (
            "id", "customer_id", "order_id", "product_id", "kind", "rating", "comment",
            "created_at", "updated_at",
        ),
        (
            c.ints(np.arange(1, n + 1)), c.ints(o.customer[order] + 1), c.ints(order + 1),
            c.ints(product + 1), c.pick(("review", "complaint"), complaint.astype(np.int64)),
            c.ints(rating), c.pick_or_null(texts, text), c.timestamps(t), c.timestamps(t),
        ),
    )  # fmt: skip


def tickets_table(
    rng: np.random.Generator, o: Orders, ret: Returns, people: People, now: int
) -> Table:
    """Tickets from late parcels, returns, payments, products, and account/other questions."""
    cat_ix = {name: k for k, name in enumerate(r.TICKET_CATEGORIES)}
    m = o.size
    orders_: list[IntArray] = []
    cats: list[IntArray] = []
    opened: list[IntArray] = []

    def add(mask: BoolArray, category: str, base: IntArray, lo: float, hi: float) -> None:
        idx = np.flatnonzero(mask)
        orders_.append(idx)
        cats.append(np.full(idx.size, cat_ix[category]))
        opened.append(base[idx] + rng.uniform(lo, hi, idx.size).astype(np.int64))

    u = rng.random((6, m))
    shipped = o.shipped != NEVER
    add(o.late & (u[0] < r.TICKET_LATE_DELIVERY), "delivery", o.shipped, 4 * DAY, 6 * DAY)
    add(shipped & (u[1] < r.TICKET_ANY_SHIPMENT), "delivery", o.shipped, HOUR, 3 * DAY)
    first_return = np.full(m, NEVER)
    np.minimum.at(first_return, ret.order, ret.requested)
    add((first_return != NEVER) & (u[2] < r.TICKET_RETURN), "return", first_return, HOUR, 5 * DAY)
    cancelled = o.cancelled != NEVER
    add(cancelled & (u[3] < r.TICKET_CANCELLED), "payment", o.cancelled, 600, 2 * DAY)
    slow_pay = np.isin(
        o.payment, [r.PAYMENTS.index("bank_transfer"), r.PAYMENTS.index("cash_on_delivery")]
    )
    add(slow_pay & ~cancelled & (u[4] < r.TICKET_SLOW_PAYMENT), "payment", o.ordered, HOUR, 3 * DAY)
    add((o.delivered != NEVER) & (u[5] < r.TICKET_PRODUCT), "product", o.delivered, DAY, 20 * DAY)
    order = np.concatenate(orders_)
    customer = o.customer[order]
    category = np.concatenate(cats)
    t_open = np.concatenate(opened)
    # account and other questions, not about an order
    for name, mean in (
        ("account", r.TICKET_ACCOUNT_PER_CUSTOMER),
        ("other", r.TICKET_OTHER_PER_CUSTOMER),
    ):
        count = rng.poisson(mean, people.size)
        who = np.repeat(np.arange(people.size), count)
        span = (now - people.signup[who]).astype(float)
        order = np.r_[order, np.full(who.size, -1)]
        customer = np.r_[customer, who]
        category = np.r_[category, np.full(who.size, cat_ix[name])]
        t_open = np.r_[t_open, people.signup[who] + (rng.random(who.size) * span).astype(np.int64)]
    keep = np.flatnonzero(t_open < now)
    keep = keep[np.argsort(t_open[keep], kind="stable")]  # ids ascend with opened_at
    order, customer, category, t_open = order[keep], customer[keep], category[keep], t_open[keep]
    n = order.size

    priority = by_group(
        rng, category, np.array([r.PRIORITY_SHARES[k] for k in r.TICKET_CATEGORIES])
    )
    corporate = people.segment[customer] == r.SEGMENTS.index("corporate")
    priority = np.minimum(priority + (corporate & (rng.random(n) < 0.3)), 3)
    urgent = priority == 3
    channel = by_group(
        rng,
        urgent.astype(np.int64),
        np.array([r.TICKET_CHANNEL_SHARES, r.TICKET_CHANNEL_SHARES_URGENT]),
    )
    logit = (
        r.RESOLVE_BASE
        + np.array([r.RESOLVE_PRIORITY[p] for p in r.PRIORITIES])[priority]
        + np.array([r.RESOLVE_CATEGORY[k] for k in r.TICKET_CATEGORIES])[category]
        + np.array([r.RESOLVE_CHANNEL[ch] for ch in r.TICKET_CHANNELS])[channel]
        + r.RESOLVE_URGENT_PHONE * (urgent & (channel == r.TICKET_CHANNELS.index("phone")))
    )
    resolves = rng.random(n) < sigmoid(logit)
    median = (
        np.array([r.RESOLVE_HOURS[p] for p in r.PRIORITIES])[priority]
        * np.array([r.RESOLVE_CHANNEL_SPEED[ch] for ch in r.TICKET_CHANNELS])[channel]
        * HOUR
    )
    duration = np.maximum(lognormal(rng, median, 0.8, n), 60).astype(np.int64)
    resolved_t = t_open + duration
    resolved = resolves & (resolved_t <= now)
    close_t = resolved_t + rng.uniform(DAY, 7 * DAY, n).astype(np.int64)
    closed = resolved & (rng.random(n) < 0.6) & (close_t <= now)
    working = rng.random(n) < 0.6
    status = np.select([closed, resolved, working], [3, 2, 1], 0)
    resolved_at = np.where(resolved, resolved_t, NEVER)
    closed_at = np.where(closed, close_t, NEVER)
    fast = duration < median
    sat_group = np.where(fast, 0, 1)
    satisfaction = 1 + by_group(
        rng, sat_group, np.array([[0.02, 0.05, 0.13, 0.35, 0.45], [0.15, 0.20, 0.30, 0.20, 0.15]])
    )
    has_sat = resolved & (rng.random(n) < 0.65)
    progress_t = t_open + np.minimum(duration // 3, np.maximum(now - t_open, 0))
    updated = np.select([closed, resolved, working], [close_t, resolved_t, progress_t], t_open)

    subjects = [s for k in r.TICKET_CATEGORIES for s in _SUBJECTS[k]]
    offsets = np.cumsum([0, *(len(_SUBJECTS[k]) for k in r.TICKET_CATEGORIES)])
    sizes = np.array([len(_SUBJECTS[k]) for k in r.TICKET_CATEGORIES])
    subject = offsets[category] + (rng.random(n) * sizes[category]).astype(np.int64)

    return Table(
        "app.support_tickets",
        (
            "id", "customer_id", "order_id", "category", "priority", "channel", "status",
            "subject", "opened_at", "resolved_at", "closed_at", "satisfaction", "opened_by",
            "updated_by", "created_at", "updated_at",
        ),
        (
            c.ints(np.arange(1, n + 1)), c.ints(customer + 1),
            c.ints_or_null(order + 1, order >= 0),
            c.pick(r.TICKET_CATEGORIES, category), c.pick(r.PRIORITIES, priority),
            c.pick(r.TICKET_CHANNELS, channel), c.pick(TICKET_STATUSES, status),
            c.pick(subjects, subject), c.timestamps(t_open), c.timestamps(resolved_at),
            c.timestamps(closed_at), c.ints_or_null(satisfaction, has_sat),
            c.constant("seed", n), c.constant("seed", n), c.timestamps(t_open),
            c.timestamps(updated),
        ),
    )  # fmt: skip
