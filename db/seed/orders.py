"""Orders, their lines and their lifecycles (status history), as numpy arrays.

Order ids ascend with ``ordered_at``. Each order is assigned to a customer who had signed
up by then, in proportion to the customer's activity. Its lifecycle is drawn in full
(payment, shipping, delivery, or cancellation) and then cut at ``now``: events after
``now`` have not happened yet, which leaves the most recent orders pending, paid or shipped.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from db.seed import churn
from db.seed import copy as c
from db.seed import relations as r
from db.seed.catalog import CATEGORIES, Catalog
from db.seed.copy import NEVER, BoolArray, IntArray, Table
from db.seed.draw import by_group, lognormal, sigmoid
from db.seed.people import DAY, People

HOUR = 3_600
STATUSES = ("pending", "paid", "shipped", "delivered", "cancelled", "returned")
PENDING, PAID, SHIPPED, DELIVERED, CANCELLED, RETURNED = range(6)
_STORE = r.CHANNELS.index("store")
_PHONE = r.CHANNELS.index("phone")
_MARKETPLACE = r.CHANNELS.index("marketplace")
_CORPORATE = r.SEGMENTS.index("corporate")
_BANK = r.PAYMENTS.index("bank_transfer")
_COD = r.PAYMENTS.index("cash_on_delivery")


@dataclass(frozen=True)
class Orders:
    """Index i is order id i + 1. Times are epoch seconds, ``NEVER`` when not (yet) happened."""

    customer: IntArray  # customer index
    channel: IntArray
    payment: IntArray
    first_order: BoolArray
    ordered: IntArray
    paid: IntArray
    shipped: IntArray
    delivered: IntArray
    cancelled: IntArray
    late: BoolArray  # delivered, and the parcel took longer than LATE_AFTER_DAYS
    line_start: IntArray  # offset of the order's first line
    n_lines: IntArray
    item_count: IntArray
    subtotal: IntArray  # cents
    discount_total: IntArray
    # per line, grouped by order
    line_order: IntArray
    line_no: IntArray
    product: IntArray  # product index
    quantity: IntArray
    unit_price: IntArray
    discount: IntArray

    @property
    def size(self) -> int:
        return len(self.customer)

    @property
    def line_total(self) -> IntArray:
        total: IntArray = self.quantity * self.unit_price - self.discount
        return total


def _black_friday_days(first_year: int, last_year: int) -> list[int]:
    """Epoch day numbers of Black Friday .. Cyber Monday for each year."""
    days: list[int] = []
    for year in range(first_year, last_year + 1):
        nov1 = dt.date(year, 11, 1)
        thursday = nov1 + dt.timedelta(days=(3 - nov1.weekday()) % 7 + 21)
        friday = (thursday - dt.date(1970, 1, 1)).days + 1
        days.extend(range(friday, friday + 4))
    return days


def _year(t: int) -> int:
    return dt.datetime.fromtimestamp(t, dt.UTC).year


def order_times(rng: np.random.Generator, m: int, start: int, end: int) -> IntArray:
    """``m`` sorted order times in [start, end): growth, month, weekday, Black Friday, hour."""
    day0, day1 = start // DAY, end // DAY
    days = np.arange(day0, day1)
    month = days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    weight = (
        r.YEARLY_GROWTH ** ((days - day0) / 365.0)
        * np.asarray(r.MONTH_FACTORS)[month]
        * np.asarray(r.WEEKDAY_FACTORS)[weekday]
    )
    weight[np.isin(days, _black_friday_days(_year(start), _year(end)))] *= r.BLACK_FRIDAY_FACTOR
    day = days[rng.choice(days.size, size=m, p=weight / weight.sum())]
    hours = np.asarray(r.HOUR_WEIGHTS, dtype=float)
    hour = rng.choice(24, size=m, p=hours / hours.sum())
    t = day * DAY + hour * HOUR + rng.integers(0, HOUR, m)
    return np.sort(np.clip(t, start, end - 1))


def _assign_customers(rng: np.random.Generator, t: IntArray, people: People) -> IntArray:
    """A customer who had signed up by ``t``, chosen in proportion to activity."""
    eligible = np.maximum(np.searchsorted(people.signup, t, side="right"), 1)
    cum = np.cumsum(people.activity)
    u = rng.random(t.size) * cum[eligible - 1]
    chosen = np.searchsorted(cum, u, side="right")
    out: IntArray = np.minimum(chosen, eligible - 1).astype(np.int64)
    return out


def make_orders(
    rng: np.random.Generator,
    m: int,
    people: People,
    catalog: Catalog,
    start: int,
    now: int,
    churn_rng: np.random.Generator | None = None,
) -> Orders:
    """``churn_rng`` set: plant the churn pattern (``db/seed/churn.py``) with that stream."""
    ordered = order_times(rng, m, start, now)
    customer = _assign_customers(rng, ordered, people)
    if churn_rng is not None:
        lapse = churn.lapse_times(churn_rng, people, start, now)
        customer = churn.reassign(
            churn_rng, ordered, customer, lapse, lambda g, t: _assign_customers(g, t, people)
        )
    segment = people.segment[customer]
    channel = by_group(rng, segment, np.asarray(r.CHANNEL_SHARES))
    pay_shares = np.asarray(r.PAYMENT_SHARES, dtype=float)
    corp_shares = pay_shares.copy()
    corp_shares[:, _BANK] *= r.CORPORATE_BANK_TRANSFER_FACTOR
    payment = by_group(
        rng,
        channel + len(r.CHANNELS) * (segment == _CORPORATE),
        np.vstack([pay_shares, corp_shares]),
    )
    by_customer = np.argsort(customer, kind="stable")
    sorted_c = customer[by_customer]
    first_order = np.zeros(m, dtype=bool)
    first_order[by_customer[np.r_[True, sorted_c[1:] != sorted_c[:-1]]]] = True

    # --- lines -----------------------------------------------------------------------------
    lines_shares = np.vstack([np.asarray(r.LINES_SHARES), np.asarray(r.STORE_LINES_SHARES)])
    n_lines = 1 + by_group(rng, np.where(channel == _STORE, 3, segment), lines_shares)
    n_lines = np.minimum(n_lines + ((channel == _PHONE) & (rng.random(m) < 0.3)), 6)
    line_start = np.r_[0, np.cumsum(n_lines)[:-1]]
    n_total = int(n_lines.sum())
    line_order = np.repeat(np.arange(m), n_lines)
    line_no = np.arange(n_total) - np.repeat(line_start, n_lines) + 1
    line_segment = segment[line_order]
    seg_weights = np.array([cat.segment_weights for cat in CATEGORIES]).T  # segment x category
    category = by_group(rng, line_segment, seg_weights)
    product = _pick_products(rng, category, channel[line_order] == _MARKETPLACE, catalog)
    quantity = np.asarray(r.QUANTITIES)[by_group(rng, line_segment, np.asarray(r.QUANTITY_SHARES))]
    unit_price = catalog.price_cents[product]
    expensive = unit_price > 30_000
    quantity = np.where(
        expensive, np.minimum(quantity, np.where(line_segment == _CORPORATE, 5, 1)), quantity
    )
    # coupons: a percentage off every line of the order, more in Black Friday week
    order_day = ordered // DAY
    bf = np.isin(order_day, _black_friday_days(_year(start), _year(now)))
    coupon = rng.random(m) < np.where(bf, r.DISCOUNT_SHARE_BLACK_FRIDAY, r.DISCOUNT_SHARE)
    percent = (
        np.asarray(r.DISCOUNT_PERCENTS)[
            rng.choice(len(r.DISCOUNT_PERCENTS), size=m, p=r.DISCOUNT_PERCENT_SHARES)
        ]
        * coupon
    )
    gross = quantity * unit_price
    discount = (gross * percent[line_order] + 50) // 100
    item_count = np.add.reduceat(quantity, line_start)
    subtotal = np.add.reduceat(gross, line_start)
    discount_total = np.add.reduceat(discount, line_start)

    # --- lifecycle ---------------------------------------------------------------------------
    store = channel == _STORE
    pay_median = np.select(
        [store, payment == _BANK, payment == _COD], [60.0, 1.2 * DAY, 1.0 * HOUR], 240.0
    )
    pay_delay = np.maximum(lognormal(rng, pay_median, 0.8, m), 1).astype(np.int64)
    ship_delay = np.maximum(lognormal(rng, np.where(store, 600.0, 18.0 * HOUR), 0.6, m), 1).astype(
        np.int64
    )
    month = ordered.astype("datetime64[s]").astype("datetime64[M]").astype(np.int64) % 12
    late_share = np.where(month >= 10, r.LATE_SHARE_PEAK, r.LATE_SHARE)
    delayed = (rng.random(m) < late_share) & ~store
    transit = lognormal(rng, np.where(store, 300.0, 2.2 * DAY), 0.35, m)
    transit = np.maximum(transit + delayed * rng.uniform(3 * DAY, 10 * DAY, m), 1).astype(np.int64)

    cancel_logit = (
        r.CANCEL_BASE
        + np.array([r.CANCEL_PAYMENT[p] for p in r.PAYMENTS])[payment]
        + r.CANCEL_FIRST_ORDER * first_order
        + np.array([r.CANCEL_CHANNEL[ch] for ch in r.CHANNELS])[channel]
    )
    cancel = rng.random(m) < sigmoid(cancel_logit)
    from_pending_share = np.select([payment == _BANK, payment == _COD], [0.85, 0.7], 0.4)
    from_pending = cancel & (rng.random(m) < from_pending_share)
    pending_wait = lognormal(rng, np.where(payment == _BANK, 5.0 * DAY, 6.0 * HOUR), 0.5, m)

    paid_t = ordered + pay_delay
    ship_t = paid_t + ship_delay
    deliv_t = ship_t + transit
    cancel_t = np.where(
        from_pending,
        ordered + np.maximum(pending_wait, 1).astype(np.int64),
        paid_t + np.maximum(ship_delay * rng.uniform(0.1, 0.9, m), 1).astype(np.int64),
    )

    def cut(t: IntArray, happens: BoolArray) -> IntArray:
        out: IntArray = np.where(happens & (t <= now), t, NEVER)
        return out

    paid = cut(paid_t, ~from_pending)
    shipped = cut(ship_t, ~cancel)
    delivered = cut(deliv_t, ~cancel)
    cancelled = cut(cancel_t, cancel)
    late = (delivered != NEVER) & (transit > r.LATE_AFTER_DAYS * DAY)
    return Orders(
        customer=customer,
        channel=channel,
        payment=payment,
        first_order=first_order,
        ordered=ordered,
        paid=paid,
        shipped=shipped,
        delivered=delivered,
        cancelled=cancelled,
        late=late,
        line_start=line_start,
        n_lines=n_lines,
        item_count=item_count,
        subtotal=subtotal,
        discount_total=discount_total,
        line_order=line_order,
        line_no=line_no,
        product=product,
        quantity=quantity,
        unit_price=unit_price,
        discount=discount,
    )


def _pick_products(
    rng: np.random.Generator, category: IntArray, marketplace: BoolArray, catalog: Catalog
) -> IntArray:
    """A product of the line's category by popularity; marketplace buyers favour cheap ones."""
    out = np.zeros(category.size, dtype=np.int64)
    for k in range(len(CATEGORIES)):
        members = catalog.members(k)
        if members.size == 0:
            # a tiny catalogue may miss a category: fall back to any product
            members = np.arange(catalog.size)
        for is_mp in (False, True):
            idx = np.flatnonzero((category == k) & (marketplace == is_mp))
            if not idx.size:
                continue
            w = catalog.popularity[members]
            if is_mp:
                w = w * (catalog.price_cents[members] / 100.0) ** -0.5
            out[idx] = members[rng.choice(members.size, size=idx.size, p=w / w.sum())]
    return out


def status_of(o: Orders, returned: IntArray) -> IntArray:
    return np.select(
        [
            returned != NEVER,
            o.cancelled != NEVER,
            o.delivered != NEVER,
            o.shipped != NEVER,
            o.paid != NEVER,
        ],
        [RETURNED, CANCELLED, DELIVERED, SHIPPED, PAID],
        PENDING,
    ).astype(np.int64)


def orders_table(o: Orders, returned: IntArray) -> Table:
    """``returned`` holds each order's returned_at (``NEVER`` unless every unit came back)."""
    ids = np.arange(1, o.size + 1)
    events = [o.paid, o.shipped, o.delivered, o.cancelled, returned]
    updated = o.ordered.copy()
    for t in events:
        updated = np.maximum(updated, np.where(t == NEVER, 0, t))
    total = o.subtotal - o.discount_total
    return Table(
        "app.orders",
        (
            "id", "customer_id", "status", "channel", "payment_method", "ordered_at",
            "paid_at", "shipped_at", "delivered_at", "cancelled_at", "returned_at",
            "item_count", "subtotal", "discount_total", "total_amount", "created_by",
            "created_at", "updated_at",
        ),
        (
            c.ints(ids), c.ints(o.customer + 1), c.pick(STATUSES, status_of(o, returned)),
            c.pick(r.CHANNELS, o.channel), c.pick(r.PAYMENTS, o.payment),
            c.timestamps(o.ordered), c.timestamps(o.paid), c.timestamps(o.shipped),
            c.timestamps(o.delivered), c.timestamps(o.cancelled), c.timestamps(returned),
            c.ints(o.item_count), c.money(o.subtotal), c.money(o.discount_total),
            c.money(total), c.constant("seed", o.size), c.timestamps(o.ordered),
            c.timestamps(updated),
        ),
    )  # fmt: skip


def items_table(o: Orders) -> Table:
    when = c.timestamps(o.ordered[o.line_order])
    return Table(
        "app.order_items",
        (
            "order_id", "line_no", "product_id", "quantity", "unit_price", "discount",
            "created_at", "updated_at",
        ),
        (
            c.ints(o.line_order + 1), c.ints(o.line_no), c.ints(o.product + 1),
            c.ints(o.quantity), c.money(o.unit_price), c.money(o.discount), when, when,
        ),
    )  # fmt: skip


def history_table(o: Orders, returned: IntArray) -> Table:
    """One row per status step, in order: NULL → pending at ordered_at, then each change."""
    m = o.size
    every = np.arange(m)
    steps: list[tuple[IntArray, IntArray, IntArray, IntArray]] = []  # order, from, to, time

    def add(mask: BoolArray | None, frm: IntArray | int, to: int, t: IntArray) -> None:
        idx = every if mask is None else np.flatnonzero(mask)
        frm_arr = np.broadcast_to(np.asarray(frm), (m,))[idx]
        steps.append((idx, frm_arr.astype(np.int64), np.full(idx.size, to), t[idx]))

    add(None, -1, PENDING, o.ordered)
    add(o.paid != NEVER, PENDING, PAID, o.paid)
    add(o.shipped != NEVER, PAID, SHIPPED, o.shipped)
    add(o.delivered != NEVER, SHIPPED, DELIVERED, o.delivered)
    add(o.cancelled != NEVER, np.where(o.paid != NEVER, PAID, PENDING), CANCELLED, o.cancelled)
    add(returned != NEVER, DELIVERED, RETURNED, returned)
    order = np.concatenate([s[0] for s in steps])
    frm = np.concatenate([s[1] for s in steps])
    to = np.concatenate([s[2] for s in steps])
    t = np.concatenate([s[3] for s in steps])
    step = np.concatenate([np.full(s[0].size, k) for k, s in enumerate(steps)])
    sort = np.lexsort((step, order))
    order, frm, to, t = order[sort], frm[sort], to[sort], t[sort]
    ids = np.arange(1, order.size + 1)
    return Table(
        "app.order_status_history",
        ("id", "order_id", "from_status", "to_status", "changed_at", "changed_by"),
        (
            c.ints(ids),
            c.ints(order + 1),
            c.pick_or_null(STATUSES, frm),
            c.pick(STATUSES, to),
            c.timestamps(t),
            c.constant("seed", order.size),
        ),
    )
