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
-- A full load (lo = -infinity, also after a truncate of products, orders, order_items or
-- returns: etl.steps, delete_sources; or the first order's day moved) rebuilds every
-- product's series (keys_all, clear_all, rebuild). An incremental run starts from the rows changed
-- in the window [lo, hi):
--  1. keys_changed: the products they involve (and deleted products, and the products of
--     deleted lines and approved returns, from the sales and returns facts' deltas: those
--     steps run first), each with `since`:
--     the earliest UTC day among the current dates of those rows (an order's ordered_at,
--     a cancelled order's cancelled_at, an approved return's decided_at, a product's
--     updated_at: its new version's start), at most the horizon's day and the day after
--     the last stored one, at least the series' first day (`start`).
--  2. A movement made through the procedures on day d changes the stock now and the
--     movements after every day before d by the same amount: the levels of the days
--     before d stay. So moves and levels: each such product's levels from the day before
--     `since` to the horizon's day, from its stock now and its movements on or after
--     `since`, each day with the product version valid at its end. When `since` is recent
--     the movements are read by date: the product's lines in the orders from the day's
--     first order id on (index on order_items (product_id, order_id)), the orders
--     cancelled since (a partial index on cancelled_at), the returns changed since (index
--     on updated_at: a procedure stamps it when it approves, so it is never before the
--     movement); else through the product's own lines.
--  3. whole: the check. The level and the version computed for the day before `since` must
--     be the stored ones (unless `since` is the first day: then every day is recomputed),
--     and the stored series must begin on `start`. A product that fails - its stock edited
--     by hand, a date moved, a movement written straight into the tables, its creation day
--     changed, the product deleted - is rebuilt whole (clear, rebuild). A movement the
--     indexes miss (dated after its row's updated_at) makes the check fail too. The others
--     get only their rows from `since` on that differ (update) or are missing (insert).
--  4. extend: every other product gets its last value on each new day (nothing moved it);
--     trim: days after the horizon's go (a horizon earlier than the last run's).
-- Not seen: edits by hand that cancel out exactly on the day before `since` (a date moved
-- and the stock edited by the same quantity in one window): a full load puts them right.
-- Parameters: :lo, :hi (the window); :first_day, :last_day (a rebuild's first and last
-- days); :stored_last (the last stored day); :cap (the latest `since`); :recent_day (from
-- it on, movements are read by date); :run_id.

-- name: span
-- (the stored days through the index on the snapshot's UTC instant)
SELECT (SELECT min(ordered_at) AT TIME ZONE 'UTC' FROM app.orders)::date AS first_day,
       (CAST(:hi AS timestamptz) AT TIME ZONE 'UTC')::date AS last_day,
       ((SELECT min(snapshot_date::timestamp AT TIME ZONE 'UTC') FROM dw.fact_stock_daily)
        AT TIME ZONE 'UTC')::date AS stored_first,
       ((SELECT max(snapshot_date::timestamp AT TIME ZONE 'UTC') FROM dw.fact_stock_daily)
        AT TIME ZONE 'UTC')::date AS stored_last;

-- name: keys_all
CREATE TEMP TABLE _stock_whole ON COMMIT DROP AS
SELECT id AS product_id FROM app.products;

-- name: keys_changed
CREATE TEMP TABLE _stock_keys ON COMMIT DROP AS
WITH lines AS NOT MATERIALIZED (  -- an order's lines: its day, and its cancellation's
    SELECT i.product_id, o.updated_at AS order_updated, i.updated_at AS line_updated,
           least((o.ordered_at AT TIME ZONE 'UTC')::date,
                 CASE WHEN o.status = 'cancelled'
                      THEN (o.cancelled_at AT TIME ZONE 'UTC')::date END) AS day
    FROM app.orders AS o JOIN app.order_items AS i ON i.order_id = o.id
),
returns AS NOT MATERIALIZED (  -- a return's line: its approval's day
    SELECT i.product_id, r.updated_at AS return_updated, i.updated_at AS line_updated,
           CASE WHEN r.status = 'approved' THEN (r.decided_at AT TIME ZONE 'UTC')::date END
               AS day
    FROM app.returns AS r
    JOIN app.order_items AS i ON i.order_id = r.order_id AND i.line_no = r.line_no
),
changed AS (
    SELECT id AS product_id, (updated_at AT TIME ZONE 'UTC')::date AS day
    FROM app.products WHERE updated_at >= :lo AND updated_at < :hi
    UNION ALL
    SELECT product_id, day FROM lines WHERE line_updated >= :lo AND line_updated < :hi
    UNION ALL
    SELECT product_id, day FROM lines WHERE order_updated >= :lo AND order_updated < :hi
    UNION ALL
    SELECT product_id, day FROM returns WHERE return_updated >= :lo AND return_updated < :hi
    UNION ALL
    SELECT product_id, day FROM returns WHERE line_updated >= :lo AND line_updated < :hi
    UNION ALL  -- lines and approved returns as they were, from the sales and returns facts'
               -- deltas of the runs since this step's last: a deleted order, line or return
               -- (gone from app, its product with it), a line moved to another product
    SELECT (d.fact ->> 'product_id')::bigint,
           ((CASE d.fact_table WHEN 'dw.fact_sales' THEN d.fact ->> 'ordered_at'
                               ELSE d.fact ->> 'decided_at' END)::timestamptz
            AT TIME ZONE 'UTC')::date
    FROM dw.fact_delta AS d
    WHERE d.sign = -1
      AND (d.fact_table = 'dw.fact_sales'
           OR (d.fact_table = 'dw.fact_returns' AND d.fact ->> 'status' = 'approved'))
      AND d.run_id > (SELECT coalesce(max(run_id), 0) FROM dw.etl_watermark
                      WHERE step = 'fact_stock_daily')
    UNION ALL  -- deleted products with a series (no trigger records them; the dimension
               -- keeps them, current)
    SELECT d.product_id, NULL FROM dw.dim_product AS d
    WHERE d.is_current
      AND NOT EXISTS (SELECT 1 FROM app.products AS p WHERE p.id = d.product_id)
      AND EXISTS (SELECT 1 FROM dw.fact_stock_daily AS f WHERE f.product_id = d.product_id)
)
-- (least() skips NULLs: a row with no movement date leaves `since` at the cap; `since` is
-- never before the series' first day, `start`, NULL for a deleted product)
SELECT c.product_id, greatest(least(min(c.day), CAST(:cap AS date)), s.start) AS since, s.start
FROM changed AS c
LEFT JOIN (SELECT id, greatest(CAST(:first_day AS date), (created_at AT TIME ZONE 'UTC')::date)
                      AS start
           FROM app.products) AS s
  ON s.id = c.product_id
GROUP BY c.product_id, s.start;

-- name: moves
-- the movements on or after each product's `since`, a sum per day: for a `since` from
-- :recent_day on (the common case: today's orders and payments), the movements since then
-- (the product's lines in today's orders, today's cancellations, the returns approved
-- since); for an earlier one, all the product's lines through the index on product_id
-- (fewer than the shop's orders since that day)
CREATE TEMP TABLE _stock_moves ON COMMIT DROP AS
WITH old_lines AS MATERIALIZED (  -- (conditions on _stock_keys itself: its statistics
                                  -- tell the planner how few keys are old)
    SELECT i.product_id, i.order_id, i.line_no, i.quantity, o.ordered_at, o.status,
           o.cancelled_at, k.since::timestamp AT TIME ZONE 'UTC' AS since_at
    FROM _stock_keys AS k
    JOIN app.order_items AS i ON i.product_id = k.product_id
    JOIN app.orders AS o ON o.id = i.order_id
    WHERE k.since < CAST(:recent_day AS date)
),
placed AS MATERIALIZED (  -- the lines of the changed products (since from :recent_day on)
                         -- in the orders from the first id placed since :recent_day on:
                         -- a range of the index on (product_id, order_id) per product
                         -- (OFFSET 0: per product, never a walk of the whole index)
    SELECT i.product_id, i.quantity, o.ordered_at
    FROM _stock_keys AS k
    CROSS JOIN LATERAL (
        SELECT l.product_id, l.order_id, l.quantity FROM app.order_items AS l
        WHERE l.product_id = k.product_id
          AND l.order_id >= (SELECT min(id)
                             FROM (SELECT id FROM app.orders  -- (the index on ordered_at;
                                   WHERE ordered_at              -- OFFSET 0 keeps min() from
                                         >= CAST(:recent_day AS date)::timestamp  -- walking
                                            AT TIME ZONE 'UTC'    -- the ids from the first)
                                   OFFSET 0) AS today)
        OFFSET 0) AS i
    JOIN (SELECT id, ordered_at FROM app.orders  -- (the day's orders: the index on
          WHERE ordered_at                       -- ordered_at holds their ids)
                >= CAST(:recent_day AS date)::timestamp AT TIME ZONE 'UTC') AS o
      ON o.id = i.order_id
    WHERE k.since >= CAST(:recent_day AS date)
),
cancelled AS MATERIALIZED (  -- the lines of the orders cancelled since :recent_day (a
                             -- partial index on cancelled_at)
    SELECT i.product_id, i.quantity, o.cancelled_at
    FROM app.orders AS o
    JOIN app.order_items AS i ON i.order_id = o.id
    WHERE o.status = 'cancelled'
      AND o.cancelled_at >= CAST(:recent_day AS date)::timestamp AT TIME ZONE 'UTC'
),
moves AS (
    SELECT l.product_id, (l.ordered_at AT TIME ZONE 'UTC')::date AS day, -l.quantity AS delta
    FROM placed AS l
    JOIN _stock_keys AS k ON k.product_id = l.product_id
    WHERE k.since >= CAST(:recent_day AS date)
      AND l.ordered_at >= k.since::timestamp AT TIME ZONE 'UTC'
    UNION ALL
    SELECT l.product_id, (l.cancelled_at AT TIME ZONE 'UTC')::date, l.quantity
    FROM cancelled AS l
    JOIN _stock_keys AS k ON k.product_id = l.product_id
    WHERE k.since >= CAST(:recent_day AS date)
      AND l.cancelled_at >= k.since::timestamp AT TIME ZONE 'UTC'
    UNION ALL
    SELECT i.product_id, (r.decided_at AT TIME ZONE 'UTC')::date, r.quantity
    FROM app.returns AS r
    JOIN app.order_items AS i ON i.order_id = r.order_id AND i.line_no = r.line_no
    JOIN _stock_keys AS k ON k.product_id = i.product_id
    WHERE r.updated_at >= CAST(:recent_day AS date)::timestamp AT TIME ZONE 'UTC'
      AND r.status = 'approved' AND k.since >= CAST(:recent_day AS date)
      AND r.decided_at >= k.since::timestamp AT TIME ZONE 'UTC'
    UNION ALL
    SELECT product_id, (ordered_at AT TIME ZONE 'UTC')::date, -quantity
    FROM old_lines WHERE ordered_at >= since_at
    UNION ALL
    SELECT product_id, (cancelled_at AT TIME ZONE 'UTC')::date, quantity
    FROM old_lines WHERE status = 'cancelled' AND cancelled_at >= since_at
    UNION ALL
    SELECT l.product_id, (r.decided_at AT TIME ZONE 'UTC')::date, r.quantity
    FROM old_lines AS l
    JOIN app.returns AS r ON r.order_id = l.order_id AND r.line_no = l.line_no
    WHERE r.status = 'approved' AND r.decided_at >= l.since_at
)
SELECT product_id, day, sum(delta) AS delta FROM moves GROUP BY product_id, day;

-- name: levels
-- from the day before `since` to the horizon's: stock now - the movements after the day
-- = (stock now - the movements since `since`) + those from `since` to the day
CREATE TEMP TABLE _stock_levels ON COMMIT DROP AS
WITH base AS (
    SELECT k.product_id, k.since, p.stock - coalesce(sum(m.delta), 0) AS units
    FROM _stock_keys AS k
    JOIN app.products AS p ON p.id = k.product_id
    LEFT JOIN _stock_moves AS m ON m.product_id = k.product_id
    GROUP BY k.product_id, k.since, p.stock
)
SELECT b.product_id, g.day::date AS day, v.product_key,
       b.units + coalesce(sum(m.delta) OVER (PARTITION BY b.product_id ORDER BY g.day), 0)
           AS units
FROM base AS b
CROSS JOIN LATERAL generate_series(CAST(b.since - 1 AS timestamp),
                                   CAST(:last_day AS timestamp), interval '1 day') AS g (day)
LEFT JOIN _stock_moves AS m ON m.product_id = b.product_id AND m.day = g.day::date
JOIN dw.dim_product AS v
  ON v.product_id = b.product_id
 AND v.valid_from < (g.day + interval '1 day') AT TIME ZONE 'UTC'
 AND v.valid_to >= (g.day + interval '1 day') AT TIME ZONE 'UTC';

-- name: whole
-- the products rebuilt whole: gone; stored from another first day; or, changed after their
-- first day, failing the check on the day before `since` (from the first day on, every
-- day is recomputed: nothing to check)
CREATE TEMP TABLE _stock_whole ON COMMIT DROP AS
SELECT k.product_id
FROM _stock_keys AS k
LEFT JOIN _stock_levels AS l ON l.product_id = k.product_id AND l.day = k.since - 1
LEFT JOIN dw.fact_stock_daily AS f
  ON f.product_id = k.product_id AND f.snapshot_date = k.since - 1
WHERE k.start IS NULL
   OR (SELECT s.snapshot_date FROM dw.fact_stock_daily AS s
       WHERE s.product_id = k.product_id ORDER BY s.snapshot_date LIMIT 1) <> k.start
   OR (k.since > k.start
       AND (f.product_id IS NULL
            OR (f.units_on_hand, f.product_key) IS DISTINCT FROM (l.units, l.product_key)));

-- name: update
-- the rows from `since` on whose level or version changed
UPDATE dw.fact_stock_daily AS f
SET product_key = l.product_key, units_on_hand = l.units, run_id = CAST(:run_id AS bigint)
FROM _stock_levels AS l
JOIN _stock_keys AS k ON k.product_id = l.product_id
WHERE f.product_id = l.product_id AND f.snapshot_date = l.day
  AND l.day >= k.since
  AND l.product_id NOT IN (SELECT product_id FROM _stock_whole)
  AND (f.product_key, f.units_on_hand) IS DISTINCT FROM (l.product_key, l.units);

-- name: insert
-- the days from `since` on not stored yet
INSERT INTO dw.fact_stock_daily (snapshot_date, product_id, product_key, units_on_hand, run_id)
SELECT l.day, l.product_id, l.product_key, l.units, CAST(:run_id AS bigint)
FROM _stock_levels AS l
JOIN _stock_keys AS k ON k.product_id = l.product_id
WHERE l.day >= k.since
  AND l.product_id NOT IN (SELECT product_id FROM _stock_whole)
  AND NOT EXISTS (SELECT 1 FROM dw.fact_stock_daily AS f
                  WHERE f.product_id = l.product_id AND f.snapshot_date = l.day);

-- name: clear_all
DELETE FROM dw.fact_stock_daily;

-- name: clear
DELETE FROM dw.fact_stock_daily WHERE product_id IN (SELECT product_id FROM _stock_whole);

-- name: trim
-- days after the horizon's (stored by a run whose clock was ahead)
DELETE FROM dw.fact_stock_daily
WHERE (snapshot_date::timestamp AT TIME ZONE 'UTC')
      > CAST(:last_day AS date)::timestamp AT TIME ZONE 'UTC';

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
    WHERE i.product_id IN (SELECT product_id FROM _stock_whole)
    UNION ALL
    SELECT i.product_id, (o.cancelled_at AT TIME ZONE 'UTC')::date, i.quantity
    FROM app.order_items AS i JOIN app.orders AS o ON o.id = i.order_id
    WHERE o.status = 'cancelled' AND o.cancelled_at IS NOT NULL
      AND i.product_id IN (SELECT product_id FROM _stock_whole)
    UNION ALL
    SELECT i.product_id, (r.decided_at AT TIME ZONE 'UTC')::date, r.quantity
    FROM app.returns AS r
    JOIN app.order_items AS i ON i.order_id = r.order_id AND i.line_no = r.line_no
    WHERE r.status = 'approved' AND i.product_id IN (SELECT product_id FROM _stock_whole)
),
daily AS (
    SELECT product_id, day, sum(delta) AS delta FROM moves GROUP BY product_id, day
),
series AS (  -- each product's first day and its stock now
    SELECT p.id AS product_id, p.stock,
           greatest(CAST(:first_day AS date), (p.created_at AT TIME ZONE 'UTC')::date) AS first
    FROM app.products AS p JOIN _stock_whole AS k ON k.product_id = p.id
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
