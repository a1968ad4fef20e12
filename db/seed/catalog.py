"""The catalogue: categories with subcategories, brands, price ranges; products drawn from them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from db.seed import copy as c
from db.seed.copy import FloatArray, IntArray, Table


@dataclass(frozen=True)
class Category:
    name: str
    code: str  # SKU prefix
    subcategories: tuple[str, ...]
    brands: tuple[str, ...]
    price_range: tuple[float, float]  # typical unit price, low .. high
    cost_ratio: tuple[float, float]
    return_effect: float  # log-odds added to relations.RETURN_BASE per line
    return_reasons: tuple[float, ...]  # shares over RETURN_REASONS
    # relative preference per segment (consumer, corporate, home_office)
    segment_weights: tuple[float, float, float]


RETURN_REASONS = (
    "damaged",
    "defective",
    "wrong_item",
    "not_as_described",
    "too_small",
    "too_large",
    "late_delivery",
    "changed_mind",
)

_SIZING = (0.05, 0.04, 0.05, 0.14, 0.33, 0.25, 0.02, 0.12)
_GOODS = (0.22, 0.30, 0.12, 0.16, 0.0, 0.0, 0.04, 0.16)
_MEDIA = (0.25, 0.10, 0.20, 0.15, 0.0, 0.0, 0.05, 0.25)

CATEGORIES: tuple[Category, ...] = (
    Category(
        "Apparel", "APP",
        ("T-Shirts", "Jeans", "Jackets", "Dresses", "Sweaters", "Shirts"),
        ("Northwind Apparel", "Urban Thread", "Alpine Loom", "Maison Verte", "Blue Harbor"),
        (12, 180), (0.30, 0.50), 1.6, _SIZING, (1.4, 0.4, 0.9),
    ),
    Category(
        "Shoes", "SHO",
        ("Sneakers", "Boots", "Sandals", "Running Shoes", "Loafers"),
        ("Stride", "Kestrel Footwear", "Cobble & Co", "Trailfox"),
        (30, 220), (0.35, 0.55), 1.8, _SIZING, (1.1, 0.3, 0.7),
    ),
    Category(
        "Electronics", "ELE",
        ("Smartphones", "Laptops", "Headphones", "Tablets", "Cameras", "Monitors"),
        ("Voltix", "Nordlicht", "Pixelon", "Auralis", "Cobalt Labs"),
        (25, 2200), (0.65, 0.85), 0.3, _GOODS, (1.0, 1.8, 1.6),
    ),
    Category(
        "Home & Kitchen", "HOM",
        ("Cookware", "Small Appliances", "Bedding", "Decor", "Storage"),
        ("Casa Nova", "Hearthstone", "Kitchenly", "Linden Home"),
        (8, 450), (0.40, 0.60), -0.2, _GOODS, (1.2, 0.5, 0.9),
    ),
    Category(
        "Beauty", "BEA",
        ("Skincare", "Makeup", "Fragrance", "Hair Care"),
        ("Lumière", "Verdana Botanics", "Sheen", "Aurora Skin"),
        (5, 120), (0.25, 0.45), -0.6, _MEDIA, (1.0, 0.2, 0.5),
    ),
    Category(
        "Sports & Outdoors", "SPO",
        ("Fitness", "Camping", "Cycling", "Team Sports", "Winter Sports"),
        ("Summit Gear", "Pulse Athletics", "Ridgeback", "Tidewater"),
        (10, 900), (0.45, 0.65), 0.2, _GOODS, (0.9, 0.3, 0.6),
    ),
    Category(
        "Books", "BOO",
        ("Fiction", "Non-Fiction", "Children's Books", "Textbooks", "Comics"),
        ("Meridian Press", "Owl & Quill", "Northbank Books"),
        (5, 90), (0.50, 0.70), -1.0, _MEDIA, (0.9, 0.6, 0.9),
    ),
    Category(
        "Toys & Games", "TOY",
        ("Board Games", "Building Sets", "Dolls", "Puzzles", "Outdoor Toys"),
        ("Playwright", "Little Giants", "Brickhaus", "Marble Fox"),
        (8, 150), (0.40, 0.60), -0.3, _GOODS, (0.8, 0.1, 0.4),
    ),
    Category(
        "Office Supplies", "OFF",
        ("Paper", "Writing", "Desk Accessories", "Printers & Ink", "Filing"),
        ("Officium", "Paperline", "Deskwise", "InkWell"),
        (2, 400), (0.45, 0.65), -0.7, _GOODS, (0.3, 2.2, 1.8),
    ),
    Category(
        "Furniture", "FUR",
        ("Office Chairs", "Desks", "Shelving", "Sofas", "Lighting"),
        ("Oakridge", "Nordform", "Studio Lamm", "Ergonomix"),
        (40, 1400), (0.45, 0.65), 0.4, _GOODS, (0.4, 1.2, 1.1),
    ),
    Category(
        "Grocery", "GRO",
        ("Coffee & Tea", "Snacks", "Pantry", "Beverages"),
        ("Good Harvest", "Bean There", "Pantry Co", "Fjord Foods"),
        (2, 45), (0.55, 0.75), -2.2, _MEDIA, (0.8, 0.9, 0.8),
    ),
)  # fmt: skip

_STYLES = (
    "Classic", "Essential", "Pro", "Lite", "Plus", "Premium", "Eco", "Urban", "Compact",
    "Deluxe", "Sport", "Signature", "Everyday", "Studio", "Travel", "Max",
)  # fmt: skip


@dataclass(frozen=True)
class Catalog:
    """Products as arrays (index i is product id i + 1)."""

    category: IntArray  # index into CATEGORIES
    price_cents: IntArray
    popularity: FloatArray  # relative chance of being picked within its category
    table: Table

    @property
    def size(self) -> int:
        return len(self.category)

    def members(self, category: int) -> IntArray:
        return np.flatnonzero(self.category == category)


def default_products(customers: int) -> int:
    """Catalogue size for a customer base: 500 at demo scale, up to 5,000."""
    return int(min(5_000, max(200, 150 + customers // 6)))


def _round_price(raw: FloatArray) -> IntArray:
    """Shop prices: x.99 below 100, whole x9.00 above 100 (in cents)."""
    cents = np.where(
        raw < 100,
        np.floor(raw) * 100 + 99,
        (np.round(raw / 10) * 10 - 1) * 100,
    )
    return np.maximum(cents, 99).astype(np.int64)


def make_catalog(rng: np.random.Generator, n: int, created_before: int) -> Catalog:
    """``n`` products spread over the categories; ``created_before`` is epoch seconds."""
    weights = np.array([1.6, 1.0, 1.3, 1.3, 0.8, 1.0, 1.2, 0.8, 0.9, 0.7, 0.6])
    category = np.sort(rng.choice(len(CATEGORIES), size=n, p=weights / weights.sum()))
    sub = np.empty(n, dtype=np.int64)
    brand = np.empty(n, dtype=np.int64)
    price_raw = np.empty(n)
    cost_ratio = np.empty(n)
    for k, cat in enumerate(CATEGORIES):
        idx = np.flatnonzero(category == k)
        sub[idx] = rng.integers(0, len(cat.subcategories), idx.size)
        brand[idx] = rng.integers(0, len(cat.brands), idx.size)
        lo, hi = cat.price_range
        # log-uniform between the range ends: many cheap items, a few expensive ones
        price_raw[idx] = np.exp(rng.uniform(np.log(lo), np.log(hi), idx.size))
        cost_ratio[idx] = rng.uniform(*cat.cost_ratio, idx.size)
    price = _round_price(price_raw)
    cost = np.round(price * cost_ratio).astype(np.int64)
    popularity: FloatArray = (1.0 / (rng.permutation(n) + 1.0) ** 0.8).astype(np.float64)
    stock = rng.integers(0, 600, n)
    stock[rng.random(n) < 0.05] = 0
    active = rng.random(n) >= 0.04
    # the first products are for sale and in stock: GraphiQL's placeOrder tab and the
    # docs' examples order product 1 (after every draw: the rest of the shop is unchanged)
    stock[:3] = np.maximum(stock[:3], 100)
    active[:3] = True
    created = created_before - rng.integers(30 * 86_400, 400 * 86_400, n)

    ids = np.arange(1, n + 1)
    style = rng.integers(0, len(_STYLES), n)
    model = rng.integers(100, 1000, n)
    names = []
    skus = []
    cats, subs, brands = [], [], []
    for i in range(n):  # n ≤ 5,000: plain Python is fine here
        cat = CATEGORIES[category[i]]
        sub_name = cat.subcategories[sub[i]]
        brand_name = cat.brands[brand[i]]
        names.append(c.escape(f"{brand_name} {_STYLES[style[i]]} {sub_name} {model[i]}"))
        skus.append(f"{cat.code}-{ids[i]:06d}")
        cats.append(c.escape(cat.name))
        subs.append(c.escape(sub_name))
        brands.append(c.escape(brand_name))
    table = Table(
        "app.products",
        (
            "id", "sku", "name", "category", "subcategory", "brand", "unit_price", "cost",
            "stock", "active", "created_at", "updated_at",
        ),
        (
            c.ints(ids), c.texts(skus), c.texts(names), c.texts(cats), c.texts(subs),
            c.texts(brands), c.money(price), c.money(cost),
            c.ints(stock), c.booleans(active), c.timestamps(created),
            c.timestamps(created),
        ),
    )  # fmt: skip
    return Catalog(category=category, price_cents=price, popularity=popularity, table=table)
