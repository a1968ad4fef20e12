"""SQLAlchemy Core descriptions of the ``app`` tables the API reads (defined once, here).

They mirror db/sql/0002_app_tables.sql; only the columns the API uses are declared.
tests/api/test_catalog.py checks them against the live catalogue so they cannot drift.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import TIMESTAMP

metadata = sa.MetaData(schema="app")

TZ = TIMESTAMP(timezone=True)
MONEY = sa.Numeric(14, 2, asdecimal=True)


def _pk() -> sa.Column[int]:
    return sa.Column("id", sa.BigInteger, primary_key=True)


customers = sa.Table(
    "customers",
    metadata,
    _pk(),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("first_name", sa.Text, nullable=False),
    sa.Column("last_name", sa.Text, nullable=False),
    sa.Column("gender", sa.Text),
    sa.Column("birth_date", sa.Date),
    sa.Column("segment", sa.Text, nullable=False),
    sa.Column("country", sa.Text, nullable=False),
    sa.Column("region", sa.Text, nullable=False),
    sa.Column("city", sa.Text, nullable=False),
    sa.Column("signup_at", TZ, nullable=False),
    sa.Column("updated_at", TZ, nullable=False),
)

products = sa.Table(
    "products",
    metadata,
    _pk(),
    sa.Column("sku", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("category", sa.Text, nullable=False),
    sa.Column("subcategory", sa.Text, nullable=False),
    sa.Column("brand", sa.Text, nullable=False),
    sa.Column("unit_price", MONEY, nullable=False),
    sa.Column("cost", MONEY, nullable=False),
    sa.Column("stock", sa.Integer, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("updated_at", TZ, nullable=False),
)

orders = sa.Table(
    "orders",
    metadata,
    _pk(),
    sa.Column("customer_id", sa.BigInteger, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("payment_method", sa.Text, nullable=False),
    sa.Column("ordered_at", TZ, nullable=False),
    sa.Column("paid_at", TZ),
    sa.Column("shipped_at", TZ),
    sa.Column("delivered_at", TZ),
    sa.Column("cancelled_at", TZ),
    sa.Column("returned_at", TZ),
    sa.Column("item_count", sa.Integer, nullable=False),
    sa.Column("subtotal", MONEY, nullable=False),
    sa.Column("discount_total", MONEY, nullable=False),
    sa.Column("total_amount", MONEY, nullable=False),
    sa.Column("updated_at", TZ, nullable=False),
)

order_items = sa.Table(
    "order_items",
    metadata,
    sa.Column("order_id", sa.BigInteger, primary_key=True),
    sa.Column("line_no", sa.Integer, primary_key=True),
    sa.Column("product_id", sa.BigInteger, nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("unit_price", MONEY, nullable=False),
    sa.Column("discount", MONEY, nullable=False),
    sa.Column("line_total", MONEY),  # generated column (never null in practice)
)

order_status_history = sa.Table(
    "order_status_history",
    metadata,
    _pk(),
    sa.Column("order_id", sa.BigInteger, nullable=False),
    sa.Column("from_status", sa.Text),
    sa.Column("to_status", sa.Text, nullable=False),
    sa.Column("changed_at", TZ, nullable=False),
    sa.Column("changed_by", sa.Text),
)

feedback = sa.Table(
    "feedback",
    metadata,
    _pk(),
    sa.Column("customer_id", sa.BigInteger, nullable=False),
    sa.Column("order_id", sa.BigInteger),
    sa.Column("product_id", sa.BigInteger),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("rating", sa.SmallInteger, nullable=False),
    sa.Column("comment", sa.Text),
    sa.Column("created_at", TZ, nullable=False),
)

returns = sa.Table(
    "returns",
    metadata,
    _pk(),
    sa.Column("order_id", sa.BigInteger, nullable=False),
    sa.Column("line_no", sa.Integer, nullable=False),
    sa.Column("customer_id", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("refund_amount", MONEY),
    sa.Column("comment", sa.Text),
    sa.Column("requested_at", TZ, nullable=False),
    sa.Column("decided_at", TZ),
)

support_tickets = sa.Table(
    "support_tickets",
    metadata,
    _pk(),
    sa.Column("customer_id", sa.BigInteger, nullable=False),
    sa.Column("order_id", sa.BigInteger),
    sa.Column("category", sa.Text, nullable=False),
    sa.Column("priority", sa.Text, nullable=False),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("opened_at", TZ, nullable=False),
    sa.Column("resolved_at", TZ),
    sa.Column("closed_at", TZ),
    sa.Column("satisfaction", sa.SmallInteger),
)

# views of db/sql/0003_app_logic.sql
customer_summary = sa.Table(
    "customer_summary",
    metadata,
    sa.Column("customer_id", sa.BigInteger, primary_key=True),
    sa.Column("order_count", sa.BigInteger),
    sa.Column("lifetime_value", MONEY),
    sa.Column("average_order_value", MONEY),
    sa.Column("first_order_at", TZ),
    sa.Column("last_order_at", TZ),
    sa.Column("return_rate", sa.Numeric),
    sa.Column("average_rating", sa.Numeric),
    sa.Column("open_ticket_count", sa.BigInteger),
)
