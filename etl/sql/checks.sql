-- Reconciliation measures, app against dw, one query per fact. Each row: measure, app, dw.
-- {late_app} / {late_dw} are the keys changed at or after the warehouse's bound (the
-- oldest step watermark), filled in by etl/checks.py: those rows are excluded on both
-- sides, so a check run beside live writes compares only what the load has covered.

-- name: fact_sales
WITH a AS (
    SELECT count(*) AS n, coalesce(sum(i.quantity), 0) AS qty,
           coalesce(sum(i.quantity * i.unit_price), 0) AS gross,
           coalesce(sum(i.line_total), 0) AS net,
           coalesce(sum(i.line_total) FILTER (
               WHERE o.status IN ('paid', 'shipped', 'delivered')), 0) AS net_sold
    FROM app.order_items AS i JOIN app.orders AS o ON o.id = i.order_id
    WHERE NOT {late_app}
), w AS (
    SELECT count(*) AS n, coalesce(sum(w.quantity), 0) AS qty, coalesce(sum(w.gross), 0) AS gross,
           coalesce(sum(w.net), 0) AS net,
           coalesce(sum(w.net) FILTER (
               WHERE w.status IN ('paid', 'shipped', 'delivered')), 0) AS net_sold
    FROM dw.fact_sales AS w
    WHERE NOT {late_dw}
)
SELECT m.* FROM a, w, LATERAL (VALUES
    ('rows', a.n::numeric, w.n::numeric),
    ('quantity', a.qty, w.qty),
    ('gross', a.gross, w.gross),
    ('net', a.net, w.net),
    ('net of paid+shipped+delivered orders', a.net_sold, w.net_sold)
) AS m(measure, app, dw);

-- name: fact_orders
WITH a AS (
    SELECT count(*) AS n, coalesce(sum(o.total_amount), 0) AS net,
           coalesce(sum(o.discount_total), 0) AS discount,
           coalesce(sum(o.item_count), 0) AS items,
           count(*) FILTER (WHERE o.status = 'cancelled') AS cancelled,
           count(*) FILTER (WHERE o.status = 'returned') AS returned
    FROM app.orders AS o
    WHERE NOT {late_app}
), w AS (
    SELECT count(*) AS n, coalesce(sum(w.net), 0) AS net, coalesce(sum(w.discount), 0) AS discount,
           coalesce(sum(w.item_count), 0) AS items,
           count(*) FILTER (WHERE w.is_cancelled) AS cancelled,
           count(*) FILTER (WHERE w.is_returned) AS returned
    FROM dw.fact_orders AS w
    WHERE NOT {late_dw}
)
SELECT m.* FROM a, w, LATERAL (VALUES
    ('rows', a.n::numeric, w.n::numeric),
    ('net (app total_amount)', a.net, w.net),
    ('discount', a.discount, w.discount),
    ('item_count', a.items::numeric, w.items::numeric),
    ('cancelled orders', a.cancelled::numeric, w.cancelled::numeric),
    ('returned orders', a.returned::numeric, w.returned::numeric)
) AS m(measure, app, dw);

-- name: fact_returns
WITH a AS (
    SELECT count(*) AS n, coalesce(sum(r.quantity), 0) AS qty,
           coalesce(sum(r.refund_amount) FILTER (WHERE r.status = 'approved'), 0) AS refunded
    FROM app.returns AS r
    WHERE NOT {late_app}
), w AS (
    SELECT count(*) AS n, coalesce(sum(w.quantity), 0) AS qty,
           coalesce(sum(w.refund_amount) FILTER (WHERE w.status = 'approved'), 0) AS refunded
    FROM dw.fact_returns AS w
    WHERE NOT {late_dw}
)
SELECT m.* FROM a, w, LATERAL (VALUES
    ('rows', a.n::numeric, w.n::numeric),
    ('quantity', a.qty::numeric, w.qty::numeric),
    ('refund_amount of approved returns', a.refunded, w.refunded)
) AS m(measure, app, dw);

-- name: fact_feedback
WITH a AS (
    SELECT count(*) AS n, coalesce(sum(f.rating), 0) AS rating,
           count(*) FILTER (WHERE f.kind = 'complaint') AS complaints
    FROM app.feedback AS f
    WHERE NOT {late_app}
), w AS (
    SELECT count(*) AS n, coalesce(sum(w.rating), 0) AS rating,
           count(*) FILTER (WHERE w.is_complaint) AS complaints
    FROM dw.fact_feedback AS w
    WHERE NOT {late_dw}
)
SELECT m.* FROM a, w, LATERAL (VALUES
    ('rows', a.n::numeric, w.n::numeric),
    ('sum of ratings', a.rating::numeric, w.rating::numeric),
    ('complaints', a.complaints::numeric, w.complaints::numeric)
) AS m(measure, app, dw);

-- name: fact_support
WITH a AS (
    SELECT count(*) AS n,
           count(*) FILTER (WHERE t.status IN ('resolved', 'closed')) AS resolved,
           coalesce(sum(t.satisfaction), 0) AS satisfaction
    FROM app.support_tickets AS t
    WHERE NOT {late_app}
), w AS (
    SELECT count(*) AS n, count(*) FILTER (WHERE w.is_resolved) AS resolved,
           coalesce(sum(w.satisfaction), 0) AS satisfaction
    FROM dw.fact_support AS w
    WHERE NOT {late_dw}
)
SELECT m.* FROM a, w, LATERAL (VALUES
    ('rows', a.n::numeric, w.n::numeric),
    ('resolved tickets', a.resolved::numeric, w.resolved::numeric),
    ('sum of satisfaction', a.satisfaction::numeric, w.satisfaction::numeric)
) AS m(measure, app, dw);

-- name: dim_customer
-- Customers loaded before the bound whose current version is missing or differs from app.
SELECT 'customers missing or stale in dim_customer' AS measure, 0::numeric AS app,
       count(*)::numeric AS dw
FROM app.customers AS c
LEFT JOIN dw.dim_customer AS d ON d.customer_id = c.id AND d.is_current
WHERE c.updated_at < :bound
  AND (d.customer_key IS NULL
       OR (d.segment, d.country, d.region, d.city, d.email)
          IS DISTINCT FROM (c.segment, c.country, c.region, c.city, c.email));

-- name: dim_product
SELECT 'products missing or stale in dim_product' AS measure, 0::numeric AS app,
       count(*)::numeric AS dw
FROM app.products AS p
LEFT JOIN dw.dim_product AS d ON d.product_id = p.id AND d.is_current
WHERE p.updated_at < :bound
  AND (d.product_key IS NULL
       OR (d.list_price, d.cost, d.category, d.subcategory, d.sku)
          IS DISTINCT FROM (p.unit_price, p.cost, p.category, p.subcategory, p.sku));
