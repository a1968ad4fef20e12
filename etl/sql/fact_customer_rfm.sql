-- fact_customer_rfm: each customer's RFM scores and segment at the end of each UTC month
-- (a periodic snapshot over dw.fact_orders, loaded after it in the same run).
--
-- For a month M the snapshot instant is as_of = the end of M, or the run's horizon while M
-- is open. Over the orders that were not cancelled and were placed before as_of:
-- recency_days = days from the last one to as_of; frequency, monetary = the orders and net
-- amount in [as_of - window, as_of); month_orders, month_revenue = those in [M, as_of).
-- Scores: ntile(:scores) among the month's customers, ties broken by customer id (the
-- same data gives the same scores): r 5 = the most recent, f and m 5 = the most;
-- fm = round((f + m) / 2), halves up. The segment is the rule of
-- semantic/models/rules/rfm.yml whose inclusive ranges hold (r, fm), bound as :cells, the
-- rules' name of each (r, fm) cell in one array (cell (r, fm) at (r - 1) * :scores + fm).
--
-- A run recomputes the months from the first one a change in the window [lo, hi) can move
-- (the month of the earliest changed order, or the last stored month, which the horizon
-- moved) up to the horizon's month; earlier months stay. Parameters: :lo, :hi.
--
-- When the only month to redo is the open one, already stored (the steady case: today's
-- orders), a run redoes only what moved (open_*): the rows of the customers whose values
-- can differ between the month's newest as_of (P, up to which every row is exact) and the
-- horizon - an order changed, an order left the trailing window, a whole day passed since
-- the last order (recency_days), a new customer version (customer_key) - then the scores
-- of the others that moved, writing only those rows: a few keys can move only the
-- customers near the edges of the tiles, which etl/retile.py re-tiles from the rows at
-- those edges (open_edges, through the scores' indexes) instead of sorting every customer
-- three times (open_sorted, kept for a run with so many keys that the edges are a large
-- share of the month). The result equals a rebuild at the horizon except for as_of,
-- which is the horizon of the run that last wrote the row. A month with a row lacking
-- last_at, or last rebuilt with other rules (dw.etl_state.rfm_rules), is rebuilt.

-- name: span
SELECT (SELECT date_trunc('month', min(ordered_at) AT TIME ZONE 'UTC')::date
        FROM dw.fact_orders WHERE NOT is_cancelled) AS first_month,
       date_trunc('month', CAST(:hi AS timestamptz) AT TIME ZONE 'UTC')::date AS last_month,
       (SELECT max(month) FROM dw.fact_customer_rfm) AS stored_last;

-- name: changed_from
-- the month of the earliest order changed in the window, as it is and as it was (the order
-- facts' deltas of the runs since this step's last, not yet published - this step
-- precedes publish - hold what it was: an order moved to another month or customer);
-- 'infinity' when none changed, and the first month when an order was deleted (its month
-- is gone with it)
SELECT CASE
    WHEN EXISTS (SELECT 1 FROM dw.etl_source_delete
                 WHERE source IN ('orders', 'order_items') AND deleted_at >= :lo
                   AND deleted_at < :hi)
        THEN DATE '-infinity'
    ELSE coalesce(date_trunc('month', least(
                      (SELECT min(ordered_at) FROM app.orders
                       WHERE updated_at >= :lo AND updated_at < :hi),
                      (SELECT min((fact ->> 'ordered_at')::timestamptz) FROM dw.fact_delta
                       WHERE fact_table = 'dw.fact_orders' AND sign <> 0
                         AND run_id > (SELECT coalesce(max(run_id), 0) FROM dw.etl_watermark
                                       WHERE step = 'fact_customer_rfm')))
                  AT TIME ZONE 'UTC')::date,
                  DATE 'infinity')
    END::text;

-- name: customers_changed
-- a customer version that began in the window (it moves the open month's customer_key)
SELECT EXISTS (SELECT 1 FROM dw.dim_customer WHERE valid_from >= :lo AND valid_from < :hi);

-- name: clear
DELETE FROM dw.fact_customer_rfm WHERE month >= CAST(:from_month AS date);

-- name: rebuild
INSERT INTO dw.fact_customer_rfm (
    month, customer_id, customer_key, as_of, last_at, recency_days, frequency, monetary,
    month_orders, month_revenue, r_score, f_score, m_score, fm_score, segment, run_id)
WITH months AS (
    SELECT m::date AS month,
           least((m + interval '1 month') AT TIME ZONE 'UTC', CAST(:hi AS timestamptz)) AS as_of,
           m AT TIME ZONE 'UTC' AS starts
    FROM generate_series(CAST(:from_month AS timestamp), CAST(:last_month AS timestamp),
                         interval '1 month') AS g (m)
),
agg AS (
    SELECT mo.month, mo.as_of, o.customer_id,
           max(o.ordered_at) AS last_at,
           count(*) FILTER (WHERE o.ordered_at >= mo.as_of - make_interval(days => :window))
               AS frequency,
           coalesce(sum(o.net) FILTER (
               WHERE o.ordered_at >= mo.as_of - make_interval(days => :window)), 0) AS monetary,
           count(*) FILTER (WHERE o.ordered_at >= mo.starts) AS month_orders,
           coalesce(sum(o.net) FILTER (WHERE o.ordered_at >= mo.starts), 0) AS month_revenue
    FROM months AS mo
    JOIN dw.fact_orders AS o ON o.ordered_at < mo.as_of AND NOT o.is_cancelled
    GROUP BY mo.month, mo.as_of, o.customer_id
),
scored AS (
    SELECT a.*,
           ntile(CAST(:scores AS integer))
               OVER (PARTITION BY a.month ORDER BY a.last_at, a.customer_id) AS r,
           ntile(CAST(:scores AS integer))
               OVER (PARTITION BY a.month ORDER BY a.frequency, a.customer_id) AS f,
           ntile(CAST(:scores AS integer))
               OVER (PARTITION BY a.month ORDER BY a.monetary, a.customer_id) AS m
    FROM agg AS a
)
SELECT s.month, s.customer_id, v.customer_key, s.as_of, s.last_at,
       floor(extract(epoch FROM s.as_of - s.last_at) / 86400)::integer,
       s.frequency, s.monetary, s.month_orders, s.month_revenue,
       s.r, s.f, s.m, (s.f + s.m + 1) / 2,
       (CAST(:cells AS text[]))[(s.r - 1) * CAST(:scores AS integer) + (s.f + s.m + 1) / 2],
       CAST(:run_id AS bigint)
FROM scored AS s
JOIN dw.dim_customer AS v
  ON v.customer_id = s.customer_id AND v.valid_from < s.as_of AND v.valid_to >= s.as_of;

-- name: open_state
-- P, the open month's newest as_of; whether every row has last_at; the rules it was built
-- with; its rows
SELECT max(as_of) AS p, bool_and(last_at IS NOT NULL) AS complete,
       (SELECT rfm_rules FROM dw.etl_state) AS rules, count(*) AS n
FROM dw.fact_customer_rfm WHERE month = CAST(:month AS date);

-- name: rules_used
UPDATE dw.etl_state SET rfm_rules = :rules;

-- name: open_keys
-- the customers whose row can differ between P and the horizon: an order changed (its
-- customer now, and before, from the order facts' deltas as in changed_from), or placed in
-- [P, hi) (one with a later ordered_at than its write), or leaving the window; a whole day
-- since the last order; a customer version that began since P (a new customer_key)
CREATE TEMP TABLE _rfm_keys ON COMMIT DROP AS
SELECT customer_id FROM app.orders WHERE updated_at >= :lo AND updated_at < :hi
UNION
SELECT (fact ->> 'customer_id')::bigint FROM dw.fact_delta
WHERE fact_table = 'dw.fact_orders' AND sign <> 0
  AND run_id > (SELECT coalesce(max(run_id), 0) FROM dw.etl_watermark
                WHERE step = 'fact_customer_rfm')
UNION
SELECT customer_id FROM dw.fact_orders
WHERE ordered_at >= CAST(:p AS timestamptz) AND ordered_at < CAST(:hi AS timestamptz)
UNION
SELECT customer_id FROM dw.fact_orders
WHERE NOT is_cancelled
  AND ordered_at >= CAST(:p AS timestamptz) - make_interval(days => :window)
  AND ordered_at < CAST(:hi AS timestamptz) - make_interval(days => :window)
UNION
-- recency_days (r) <> the whole days from last_at to :hi, i.e. :hi outside
-- [last_at + r days, last_at + r + 1 days): through the index of migration 0022 on
-- L = last_at + r days, which every row being exact at P puts in (P - 1 day, P], so the
-- rows a day moved are those with L in (P - 1 day, :hi - 1 day] (a horizon behind P
-- rebuilds the month: etl.load); a narrow range, which the planner estimates as such
SELECT customer_id FROM dw.fact_customer_rfm
WHERE month = CAST(:month AS date)
  AND (last_at AT TIME ZONE 'UTC') + make_interval(days => recency_days)
      <= (CAST(:hi AS timestamptz) AT TIME ZONE 'UTC') - interval '1 day'
  AND (last_at AT TIME ZONE 'UTC') + make_interval(days => recency_days)
      > (CAST(:p AS timestamptz) AT TIME ZONE 'UTC') - interval '1 day'
UNION
SELECT customer_id FROM dw.dim_customer
WHERE valid_from >= CAST(:p AS timestamptz) AND valid_from < CAST(:hi AS timestamptz);

-- name: open_fresh
-- the keys' values at the horizon (a key with no order left has none)
CREATE TEMP TABLE _rfm_fresh ON COMMIT DROP AS
SELECT o.customer_id, v.customer_key,
       max(o.ordered_at) AS last_at,
       count(*) FILTER (WHERE o.ordered_at >= CAST(:hi AS timestamptz)
                                              - make_interval(days => :window)) AS frequency,
       coalesce(sum(o.net) FILTER (WHERE o.ordered_at >= CAST(:hi AS timestamptz)
                                                        - make_interval(days => :window)),
                0) AS monetary,
       count(*) FILTER (WHERE o.ordered_at >= CAST(:month AS timestamp) AT TIME ZONE 'UTC')
           AS month_orders,
       coalesce(sum(o.net) FILTER (
           WHERE o.ordered_at >= CAST(:month AS timestamp) AT TIME ZONE 'UTC'), 0)
           AS month_revenue
FROM dw.fact_orders AS o
JOIN dw.dim_customer AS v
  ON v.customer_id = o.customer_id AND v.valid_from < CAST(:hi AS timestamptz)
 AND v.valid_to >= CAST(:hi AS timestamptz)
WHERE o.customer_id IN (SELECT customer_id FROM _rfm_keys)
  AND NOT o.is_cancelled AND o.ordered_at < CAST(:hi AS timestamptz)
GROUP BY o.customer_id, v.customer_key;

-- name: open_values
-- the keys' rows as stored (removed) and as they are now (fresh: _rfm_fresh)
SELECT false AS is_fresh, customer_id, last_at, frequency, monetary
FROM dw.fact_customer_rfm
WHERE month = CAST(:month AS date) AND customer_id IN (SELECT customer_id FROM _rfm_keys)
UNION ALL
SELECT true, customer_id, last_at, frequency, monetary FROM _rfm_fresh;

-- name: open_edges
-- for one score ({score}, ordered by {value}): the last :w rows of tiles 1 .. :tiles - 1
-- and the first :w of tiles 2 .. :tiles, through the score's index (migration 0022)
SELECT e.s, true AS is_last, w.v, w.customer_id
FROM generate_series(1, CAST(:tiles AS integer) - 1) AS e (s)
CROSS JOIN LATERAL (
    SELECT {value} AS v, customer_id FROM dw.fact_customer_rfm
    WHERE month = CAST(:month AS date) AND {score} = e.s
    ORDER BY {value} DESC, customer_id DESC LIMIT CAST(:w AS integer)) AS w
UNION ALL
SELECT e.s, false, w.v, w.customer_id
FROM generate_series(2, CAST(:tiles AS integer)) AS e (s)
CROSS JOIN LATERAL (
    SELECT {value} AS v, customer_id FROM dw.fact_customer_rfm
    WHERE month = CAST(:month AS date) AND {score} = e.s
    ORDER BY {value}, customer_id LIMIT CAST(:w AS integer)) AS w;

-- name: open_named
-- what etl.retile decided: each fresh row's scores, and the scores that moved of the others
-- (NULL: kept)
CREATE TEMP TABLE _rfm_named ON COMMIT DROP AS
SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:fresh AS boolean[]), CAST(:r AS integer[]),
                     CAST(:f AS integer[]), CAST(:m AS integer[]))
    AS n (customer_id, is_fresh, r, f, m);

-- name: open_write
-- the keys' rows written (gone when they have no order left), the others' scores and
-- segment where they moved
WITH moved AS (
    UPDATE dw.fact_customer_rfm AS t
    SET r_score = coalesce(n.r, t.r_score), f_score = coalesce(n.f, t.f_score),
        m_score = coalesce(n.m, t.m_score),
        fm_score = (coalesce(n.f, t.f_score) + coalesce(n.m, t.m_score) + 1) / 2,
        segment = (CAST(:cells AS text[]))[
            (coalesce(n.r, t.r_score) - 1) * CAST(:scores AS integer)
            + (coalesce(n.f, t.f_score) + coalesce(n.m, t.m_score) + 1) / 2],
        run_id = CAST(:run_id AS bigint)
    FROM _rfm_named AS n
    WHERE t.month = CAST(:month AS date) AND t.customer_id = n.customer_id AND NOT n.is_fresh
    RETURNING 1
),
written AS (
    INSERT INTO dw.fact_customer_rfm AS t (
        month, customer_id, customer_key, as_of, last_at, recency_days, frequency, monetary,
        month_orders, month_revenue, r_score, f_score, m_score, fm_score, segment, run_id)
    SELECT CAST(:month AS date), f.customer_id, f.customer_key, CAST(:hi AS timestamptz),
           f.last_at,
           floor(extract(epoch FROM CAST(:hi AS timestamptz) - f.last_at) / 86400)::integer,
           f.frequency, f.monetary, f.month_orders, f.month_revenue,
           n.r, n.f, n.m, (n.f + n.m + 1) / 2,
           (CAST(:cells AS text[]))[(n.r - 1) * CAST(:scores AS integer) + (n.f + n.m + 1) / 2],
           CAST(:run_id AS bigint)
    FROM _rfm_fresh AS f
    JOIN _rfm_named AS n ON n.customer_id = f.customer_id AND n.is_fresh
    ON CONFLICT (customer_id, month) DO UPDATE
    SET customer_key = excluded.customer_key, as_of = excluded.as_of,
        last_at = excluded.last_at, recency_days = excluded.recency_days,
        frequency = excluded.frequency, monetary = excluded.monetary,
        month_orders = excluded.month_orders, month_revenue = excluded.month_revenue,
        r_score = excluded.r_score, f_score = excluded.f_score, m_score = excluded.m_score,
        fm_score = excluded.fm_score, segment = excluded.segment, run_id = excluded.run_id
    RETURNING (t.xmax = 0) AS is_new
),
gone AS (
    DELETE FROM dw.fact_customer_rfm
    WHERE month = CAST(:month AS date)
      AND customer_id IN (SELECT customer_id FROM _rfm_keys)
      AND customer_id NOT IN (SELECT customer_id FROM _rfm_fresh)
    RETURNING 1
)
SELECT (SELECT count(*) FROM _rfm_keys) AS keys,
       (SELECT count(*) FILTER (WHERE is_new) FROM written) AS inserted,
       (SELECT count(*) FILTER (WHERE NOT is_new) FROM written)
           + (SELECT count(*) FROM moved) AS updated,
       (SELECT count(*) FROM gone) AS deleted;

-- name: open_sorted
-- (instead of etl.retile, when the keys are so many that the tiles' edges are a large share
-- of the month) _rfm_named from every customer's scores over the month's values (the
-- keys' fresh ones): the fresh rows, and the others whose scores moved
CREATE TEMP TABLE _rfm_named ON COMMIT DROP AS
WITH cur AS (
    SELECT customer_id, last_at, frequency, monetary, r_score, f_score, m_score,
           false AS is_fresh
    FROM dw.fact_customer_rfm
    WHERE month = CAST(:month AS date)
      AND customer_id NOT IN (SELECT customer_id FROM _rfm_keys)
    UNION ALL
    SELECT customer_id, last_at, frequency, monetary, NULL, NULL, NULL, true FROM _rfm_fresh
),
scored AS (
    SELECT c.*,
           ntile(CAST(:scores AS integer)) OVER (ORDER BY c.last_at, c.customer_id) AS r,
           ntile(CAST(:scores AS integer)) OVER (ORDER BY c.frequency, c.customer_id) AS f,
           ntile(CAST(:scores AS integer)) OVER (ORDER BY c.monetary, c.customer_id) AS m
    FROM cur AS c
)
SELECT customer_id, is_fresh, r, f, m
FROM scored
WHERE is_fresh OR (r, f, m) IS DISTINCT FROM (r_score, f_score, m_score);
