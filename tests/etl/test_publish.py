"""The publish step refreshes only the rollup buckets of the touched days, and the rollups
it leaves are those a rebuild from scratch gives, whatever the change: a status change on
an old day, a new order, a deleted order, a type-1 and an SCD2 change of a dimension."""

from __future__ import annotations

import json

from db.engine import make_engine
from etl import pipeline
from semantic.rollups import build_all
from semantic.validate import default_model
from tests.etl.conftest import one, return_an_order, sql
from tests.etl.test_crash_and_concurrency import _derived


def _built(url: str) -> dict[str, tuple[int, object]]:
    return {
        n: (v, at) for n, v, at in sql(url, "SELECT name, version, built_at FROM dw_rollup.build")
    }


def test_touched_buckets_are_refreshed_and_equal_a_rebuild(loaded_shop: str) -> None:
    url = loaded_shop
    before = _built(url)
    version = one(url, "SELECT version FROM dw.etl_state")
    assert {v for v, _ in before.values()} == {version}

    old = return_an_order(url)
    gone = one(
        url,
        "SELECT min(o.id) FROM app.orders o WHERE o.status = 'cancelled' AND o.id <> %s"
        " AND NOT EXISTS (SELECT 1 FROM app.feedback f WHERE f.order_id = o.id)"
        " AND NOT EXISTS (SELECT 1 FROM app.support_tickets t WHERE t.order_id = o.id)"
        " AND NOT EXISTS (SELECT 1 FROM app.returns r WHERE r.order_id = o.id)",
        (old,),
    )
    sql(url, "DELETE FROM app.orders WHERE id = %s", (gone,))
    product = one(url, "SELECT min(id) FROM app.products WHERE active AND stock > 10")
    customer = one(url, "SELECT min(id) FROM app.customers")
    sql(url, "UPDATE app.products SET brand = 'Renamed' WHERE id = %s", (product,))  # type 1
    sql(url, "UPDATE app.customers SET segment = 'corporate', country = 'Norway'"
             " WHERE id = %s", (customer,))  # SCD2  # fmt: skip
    items = json.dumps([{"product_id": product, "quantity": 2}])
    sql(url, "SELECT app.place_order(%s, %s::jsonb, 'web', 'card')", (customer, items))

    result = pipeline.run(url)

    publish = next(s.counts for s in result.steps if s.step == "publish")
    assert publish.read > 3  # touched days: the old order's, the deleted one's, the brand's
    after = _built(url)
    assert {v for v, _ in after.values()} == {version + 1}
    assert {n: at for n, (_, at) in after.items()} == {n: at for n, (_, at) in before.items()}
    refreshed = _derived(url)

    build_all(make_engine(url), default_model(), force=True)  # from scratch
    assert _derived(url) == refreshed
