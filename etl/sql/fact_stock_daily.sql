-- fact_stock_daily: units on hand per product at the end of each UTC day (a periodic
-- snapshot, semi-additive: it adds up across products, not across days).
--
-- Derived from app: the current app.products.stock and the stock movements the
-- procedures make - an order takes its lines' quantities when placed (ordered_at), a
-- cancellation gives them back (cancelled_at), an approved return gives its quantity back
-- (decided_at). Stock at the end of day D = stock now - the movements after D. Every
-- product has one row a day from the later of the first order's day and its creation day
-- to the day of the run's horizon. (A stock change made outside the procedures - an admin
-- edit, a bulk load - has no date: it moves the product's whole history.)
--
-- A run recomputes the whole series of the products whose stock or movements changed in
-- the window [lo, hi) (and of deleted products: their rows go), and extends every other
-- product's series with its last value up to the new last day (nothing moved it since).
-- With lo = -infinity (a first or full load) every product is recomputed.
-- Parameters: :lo, :hi.

-- name: span
SELECT (SELECT min(ordered_at) AT TIME ZONE 'UTC' FROM app.orders)::date AS first_day,
       (CAST(:hi AS timestamptz) AT TIME ZONE 'UTC')::date AS last_day,
       (SELECT min(snapshot_date) FROM dw.fact_stock_daily) AS stored_first,
       (SELECT max(snapshot_date) FROM dw.fact_stock_daily) AS stored_last;

-- name: keys_all
CREATE TEMP TABLE _stock_keys ON COMMIT DROP AS
SELECT id AS product_id FROM app.products;

-- name: keys_changed
CREATE TEMP TABLE _stock_keys ON COMMIT DROP AS
SELECT id AS product_id FROM app.products WHERE updated_at >= :lo AND updated_at < :hi
UNION
SELECT i.product_id FROM app.order_items AS i WHERE i.updated_at >= :lo AND i.updated_at < :hi
UNION
SELECT i.product_id
FROM app.orders AS o JOIN app.order_items AS i ON i.order_id = o.id
WHERE o.updated_at >= :lo AND o.updated_at < :hi
UNION
SELECT i.product_id
FROM app.returns AS r
JOIN app.order_items AS i ON i.order_id = r.order_id AND i.line_no = r.line_no
WHERE r.updated_at >= :lo AND r.updated_at < :hi
UNION
SELECT key_id FROM dw.etl_source_delete
WHERE source = 'products' AND key_id IS NOT NULL AND deleted_at >= :lo AND deleted_at < :hi;

-- name: clear_all
DELETE FROM dw.fact_stock_daily;

-- name: clear
DELETE FROM dw.fact_stock_daily WHERE product_id IN (SELECT product_id FROM _stock_keys);

-- name: extend
-- the products nothing moved: their last value on each new day
INSERT INTO dw.fact_stock_daily (snapshot_date, product_id, product_key, units_on_hand)
SELECT s.day::date, l.product_id, l.product_key, l.units_on_hand
FROM dw.fact_stock_daily AS l
CROSS JOIN LATERAL generate_series(CAST(l.snapshot_date + 1 AS timestamp),
                                   CAST(:last_day AS timestamp), interval '1 day') AS s (day)
WHERE l.snapshot_date = CAST(:stored_last AS date)
  AND l.product_id NOT IN (SELECT product_id FROM _stock_keys);

-- name: rebuild
INSERT INTO dw.fact_stock_daily (snapshot_date, product_id, product_key, units_on_hand)
WITH moves AS (
    SELECT i.product_id, (o.ordered_at AT TIME ZONE 'UTC')::date AS day, -i.quantity AS delta
    FROM app.order_items AS i JOIN app.orders AS o ON o.id = i.order_id
    WHERE i.product_id IN (SELECT product_id FROM _stock_keys)
    UNION ALL
    SELECT i.product_id, (o.cancelled_at AT TIME ZONE 'UTC')::date, i.quantity
    FROM app.order_items AS i JOIN app.orders AS o ON o.id = i.order_id
    WHERE o.status = 'cancelled' AND o.cancelled_at IS NOT NULL
      AND i.product_id IN (SELECT product_id FROM _stock_keys)
    UNION ALL
    SELECT i.product_id, (r.decided_at AT TIME ZONE 'UTC')::date, r.quantity
    FROM app.returns AS r
    JOIN app.order_items AS i ON i.order_id = r.order_id AND i.line_no = r.line_no
    WHERE r.status = 'approved' AND i.product_id IN (SELECT product_id FROM _stock_keys)
),
daily AS (
    SELECT product_id, day, sum(delta) AS delta FROM moves GROUP BY product_id, day
),
totals AS (
    SELECT product_id, sum(delta) AS total,
           sum(delta) FILTER (WHERE day < CAST(:first_day AS date)) AS early
    FROM daily GROUP BY product_id
),
series AS (
    SELECT p.id AS product_id, p.stock, s.day::date AS day
    FROM app.products AS p
    JOIN _stock_keys AS k ON k.product_id = p.id
    CROSS JOIN LATERAL generate_series(
        greatest(CAST(:first_day AS timestamp), date_trunc('day', p.created_at AT TIME ZONE 'UTC')),
        CAST(:last_day AS timestamp), interval '1 day') AS s (day)
)
SELECT s.day, s.product_id, v.product_key,
       -- stock now - the movements after the day
       s.stock - (coalesce(t.total, 0) - coalesce(t.early, 0)
                  - sum(coalesce(d.delta, 0)) OVER (PARTITION BY s.product_id ORDER BY s.day))
FROM series AS s
LEFT JOIN daily AS d ON d.product_id = s.product_id AND d.day = s.day
LEFT JOIN totals AS t ON t.product_id = s.product_id
JOIN dw.dim_product AS v
  ON v.product_id = s.product_id
 AND v.valid_from < (s.day + 1)::timestamp AT TIME ZONE 'UTC'
 AND v.valid_to >= (s.day + 1)::timestamp AT TIME ZONE 'UTC';
