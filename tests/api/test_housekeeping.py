"""The serving process's hourly chores (api/app.py): what a day has made stale goes —
idempotency keys and the feedback edits of customers who never edited again (0033 prunes
a customer's own only when it edits) — and what is recent stays."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from api.app import _chores
from db.engine import make_engine


def test_hourly_chores_prune_what_is_older_than_a_day(
    clone_database: Callable[[str], str],
) -> None:
    engine = make_engine(clone_database("housekeeping"))
    try:
        with engine.begin() as conn:
            customer = conn.execute(
                sa.text(
                    "INSERT INTO app.customers (email, first_name, last_name, country, region,"
                    " city) VALUES ('h@example.com', 'H', 'K', 'DE', 'R', 'C') RETURNING id"
                )
            ).scalar_one()
            conn.execute(
                sa.text(
                    "INSERT INTO app.feedback_edits (customer_id, edited_at) SELECT :c,"
                    " now() - make_interval(hours => h) FROM unnest(ARRAY[1, 23, 25, 48]) AS h"
                ),
                {"c": customer},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO app.idempotency_keys (principal, key, request_sha256,"
                    " created_at) SELECT 'apikey:1', 'k' || h, repeat('0', 64),"
                    " now() - make_interval(hours => h) FROM unnest(ARRAY[1, 25]) AS h"
                )
            )
        _chores(engine, False)  # the every-minute round prunes nothing
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM app.feedback_edits")).scalar() == 4
        _chores(engine, True)
        with engine.connect() as conn:
            hours = conn.execute(
                sa.text(
                    "SELECT round(extract(epoch FROM now() - edited_at) / 3600)::int"
                    " FROM app.feedback_edits ORDER BY 1"
                )
            ).scalars()
            assert list(hours) == [1, 23]
            keys = conn.execute(sa.text("SELECT key FROM app.idempotency_keys")).scalars()
            assert list(keys) == ["k1"]
    finally:
        engine.dispose()
