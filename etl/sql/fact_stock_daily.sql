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
-- (the stored days through the index on the snapshot's UTC instant)
SELECT (SELECT min(ordered_at) AT TIME ZONE 'UTC' FROM app.orders)::date AS first_day,
       (CAST(:hi AS timestamptz) AT TIME ZONE 'UTC')::date AS last_day,
       ((SELECT min(snapshot_date::timestamp AT TIME ZONE 'UTC') FROM dw.fact_stock_daily)
        AT TIME ZONE 'UTC')::date AS stored_first,
       ((SELECT max(snapshot_date::timestamp AT TIME ZONE 'UTC') FROM dw.fact_stock_daily)
        AT TIME ZONE 'UTC')::date AS stored_last;

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
INSERT INTO dw.fact_stock_daily (snapshot_date, product_id, product_key, units_on_hand, run_id)
SELECT s.day::date, l.product_id, l.product_key, l.units_on_hand, CAST(:run_id AS bigint)
FROM dw.fact_stock_daily AS l
CROSS JOIN LATERAL generate_series(CAST(l.snapshot_date + 1 AS timestamp),
                                   CAST(:last_day AS timestamp), interval '1 day') AS s (day)
WHERE (l.snapshot_date::timestamp AT TIME ZONE 'UTC')
      = CAST(:stored_last AS date)::timestamp AT TIME ZONE 'UTC'
  AND l.product_id NOT IN (SELECT product_id FROM _stock_keys);

-- name: rebuild
-- Each product's stock changes on the days it has movements: one level per such day (and
-- one from the series' first day, movements before it folded in), each spread over the days
-- until the next change. Windows run over the change days, not over every day.
INSERT INTO dw.fact_stock_daily (snapshot_date, product_id, product_key, units_on_hand, run_id)
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
series AS (  -- each product's first day and its stock now
    SELECT p.id AS product_id, p.stock,
           greatest(CAST(:first_day AS date), (p.created_at AT TIME ZONE 'UTC')::date) AS first
    FROM app.products AS p JOIN _stock_keys AS k ON k.product_id = p.id
),
changes AS (  -- the days the stock changes, from the first day to the horizon's
    SELECT x.product_id, greatest(x.day, s.first) AS day, sum(x.delta) AS delta
    FROM (SELECT product_id, day, delta FROM daily WHERE day <= CAST(:last_day AS date)
          UNION ALL
          SELECT product_id, first, 0 FROM series) AS x
    JOIN series AS s ON s.product_id = x.product_id
    GROUP BY x.product_id, greatest(x.day, s.first)
),
levels AS (  -- stock now - the movements after the day = stock now - all + those up to it
    SELECT c.product_id, c.day,
           lead(c.day, 1, CAST(:last_day AS date) + 1) OVER w AS until,
           s.stock - coalesce(t.total, 0) + sum(c.delta) OVER w AS units
    FROM changes AS c
    JOIN series AS s ON s.product_id = c.product_id
    LEFT JOIN (SELECT product_id, sum(delta) AS total FROM daily GROUP BY product_id) AS t
      ON t.product_id = c.product_id
    WINDOW w AS (PARTITION BY c.product_id ORDER BY c.day)
)
SELECT g.day::date, l.product_id, v.product_key, l.units, CAST(:run_id AS bigint)
FROM levels AS l
CROSS JOIN LATERAL generate_series(CAST(l.day AS timestamp), CAST(l.until - 1 AS timestamp),
                                   interval '1 day') AS g (day)
JOIN dw.dim_product AS v
  ON v.product_id = l.product_id
 AND v.valid_from < (g.day + interval '1 day') AT TIME ZONE 'UTC'
 AND v.valid_to >= (g.day + interval '1 day') AT TIME ZONE 'UTC';
