"""Customers: segment, demographics, geography, names and unique e-mail addresses.

Names come from Faker, seeded, in the locale of the customer's country: a pool of names is
drawn per locale once and customers sample from it with numpy (fast at any scale).
Customers are numbered in signup order (id 1 signed up first).
"""

from __future__ import annotations

import re
import unicodedata
import warnings
from dataclasses import dataclass

import numpy as np

from db.seed import copy as c
from db.seed import relations as r
from db.seed.copy import FloatArray, IntArray, Table
from db.seed.geo import COUNTRIES

DAY = 86_400
_POOL_FIRST = 250
_POOL_LAST = 400
_POOL_COMPANY = 150


@dataclass(frozen=True)
class People:
    """Customers as arrays; index i is customer id i + 1 (ascending signup)."""

    segment: IntArray  # index into relations.SEGMENTS
    country: IntArray  # index into geo.COUNTRIES
    signup: IntArray  # epoch seconds, ascending
    activity: FloatArray  # relative order frequency
    return_propensity: FloatArray  # log-odds added to every line's return chance
    table: Table

    @property
    def size(self) -> int:
        return len(self.segment)


def _ascii(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "", plain.lower())


def _faker_pools(seed: int) -> list[tuple[list[str], list[str], list[str], list[str]]]:
    """Per country: female first names, male first names, last names, company domains."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from faker import Faker

    pools = []
    for k, country in enumerate(COUNTRIES):
        fake = Faker(country.locale)
        fake.seed_instance(seed * 1_000 + k)
        female = [fake.first_name_female() for _ in range(_POOL_FIRST)]
        male = [fake.first_name_male() for _ in range(_POOL_FIRST)]
        last = [fake.last_name() for _ in range(_POOL_LAST)]
        domains = []
        for _ in range(_POOL_COMPANY):
            words = [_ascii(w) for w in fake.company().split()]
            slug = "-".join(w for w in words[:2] if w) or "company"
            domains.append(f"{slug}.{country.tld}")
        pools.append((female, male, last, domains))
    return pools


def _signups(rng: np.random.Generator, n: int, start: int, end: int) -> IntArray:
    """20 % signed up in the two years before the window, the rest inside it, growing."""
    span = end - start
    before = rng.random(n) < 0.20
    # inside the window: density grows linearly (more customers lately)
    inside = start + (np.sqrt(rng.random(n) * 0.75 + 0.25) - 0.5) / 0.5 * span
    pre = start - rng.random(n) * 2 * 365 * DAY
    signup = np.where(before, pre, inside).astype(np.int64)
    signup = np.sort(np.minimum(signup, end - 3_600))
    signup[0] = min(signup[0], start - DAY)  # someone can place the very first order
    return signup


def make_people(rng: np.random.Generator, n: int, start: int, end: int, seed: int) -> People:
    """``n`` customers; orders fall in [start, end) (epoch seconds)."""
    pools = _faker_pools(seed)
    segment = rng.choice(len(r.SEGMENTS), size=n, p=r.SEGMENT_SHARES)
    shares = np.array([co.share for co in COUNTRIES])
    country = rng.choice(len(COUNTRIES), size=n, p=shares / shares.sum())
    gender = rng.choice(len(r.GENDERS), size=n, p=r.GENDER_SHARES)
    signup = _signups(rng, n, start, end)
    age_years = np.clip(rng.normal(38, 13, n), 18.01, 85)
    birth_days = (signup - (age_years * 365.25 * DAY).astype(np.int64)) // DAY
    activity = rng.gamma(0.7, 1.0, n) * np.asarray(r.SEGMENT_ACTIVITY)[segment]
    propensity = rng.normal(0.0, r.RETURN_CUSTOMER_SD, n)

    first_i = rng.integers(0, _POOL_FIRST, n)
    last_i = rng.integers(0, _POOL_LAST, n)
    company_i = rng.integers(0, _POOL_COMPANY, n)
    host_choice = _pick_hosts(rng, country)
    pattern = rng.integers(0, 5, n)
    other_female = rng.random(n) < 0.5
    year = rng.integers(60, 100, n)

    firsts: list[str] = []
    lasts: list[str] = []
    emails: list[str] = []
    regions: list[str] = []
    cities: list[str] = []
    seen: dict[str, int] = {}
    geo_choice = _pick_cities(rng, country)
    for i in range(n):  # string assembly per customer; customers are ~10 % of orders
        k = int(country[i])
        female, male, last_pool, domains = pools[k]
        g = int(gender[i])
        first = (female if g == 0 or (g == 2 and other_female[i]) else male)[first_i[i]]
        last = last_pool[last_i[i]]
        fa, la = _ascii(first) or "user", _ascii(last) or "customer"
        p = int(pattern[i])
        local = (
            f"{fa}.{la}",
            f"{fa}{la}",
            f"{fa[0]}.{la}",
            f"{fa}_{la}",
            f"{fa}.{la}{year[i]}",
        )[p]
        if r.SEGMENTS[segment[i]] == "corporate":
            host = domains[company_i[i]]
        else:
            host = COUNTRIES[k].mail_hosts[host_choice[i]]
        email = f"{local}@{host}"
        count = seen.get(email, 0)
        seen[email] = count + 1
        if count:
            email = f"{local}{count + 1}@{host}"
            while email in seen:
                count += 1
                email = f"{local}{count + 1}@{host}"
            seen[email] = 1
        region, city = COUNTRIES[k].cities[geo_choice[i]][:2]
        firsts.append(c.escape(first))
        lasts.append(c.escape(last))
        emails.append(c.escape(email))
        regions.append(c.escape(region))
        cities.append(c.escape(city))

    ids = np.arange(1, n + 1)
    table = Table(
        "app.customers",
        (
            "id", "email", "first_name", "last_name", "gender", "birth_date", "segment",
            "country", "region", "city", "signup_at", "created_at", "updated_at",
        ),
        (
            c.ints(ids), c.texts(emails), c.texts(firsts), c.texts(lasts),
            c.pick(r.GENDERS, gender), c.dates(birth_days), c.pick(r.SEGMENTS, segment),
            c.pick([co.name for co in COUNTRIES], country), c.texts(regions), c.texts(cities),
            c.timestamps(signup), c.timestamps(signup), c.timestamps(signup),
        ),
    )  # fmt: skip
    return People(segment, country, signup, activity, propensity, table)


def _pick_cities(rng: np.random.Generator, country: IntArray) -> IntArray:
    """Index into the country's city list, weighted by city size."""
    out = np.zeros(len(country), dtype=np.int64)
    for k, co in enumerate(COUNTRIES):
        idx = np.flatnonzero(country == k)
        w = np.array([size for _, _, size in co.cities], dtype=float)
        out[idx] = rng.choice(len(w), size=idx.size, p=w / w.sum())
    return out


def _pick_hosts(rng: np.random.Generator, country: IntArray) -> IntArray:
    """Index into the country's mail hosts; the first is the most common (weights 1/rank)."""
    out = np.zeros(len(country), dtype=np.int64)
    for k, co in enumerate(COUNTRIES):
        idx = np.flatnonzero(country == k)
        w = 1.0 / np.arange(1, len(co.mail_hosts) + 1)
        out[idx] = rng.choice(len(w), size=idx.size, p=w / w.sum())
    return out
