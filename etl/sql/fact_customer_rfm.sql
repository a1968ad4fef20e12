-- fact_customer_rfm: each customer's RFM scores and segment at the end of each UTC month
-- (a periodic snapshot over dw.fact_orders, loaded after it in the same run).
--
-- For a month M the snapshot instant is as_of = the end of M, or the run's horizon while M
-- is open. Over the orders that were not cancelled and were placed before as_of:
-- recency_days = days from the last one to as_of; frequency, monetary = the orders and net
-- amount in [as_of - window, as_of); month_orders, month_revenue = those in [M, as_of).
-- Scores: ntile(:scores) among the month's customers, ties broken by customer id (the
-- same data gives the same scores): r 5 = the most recent, f and m 5 = the most;
-- fm = round((f + m) / 2), halves up. The segment is the rule (bound as JSON from
-- semantic/models/rules/rfm.yml) whose inclusive ranges hold (r, fm).
--
-- A run recomputes the months from the first one a change in the window [lo, hi) can move
-- (the month of the earliest changed order, or the last stored month, which the horizon
-- moved) up to the horizon's month; earlier months stay. Parameters: :lo, :hi.

-- name: span
SELECT (SELECT date_trunc('month', min(ordered_at) AT TIME ZONE 'UTC')::date
        FROM dw.fact_orders WHERE NOT is_cancelled) AS first_month,
       date_trunc('month', CAST(:hi AS timestamptz) AT TIME ZONE 'UTC')::date AS last_month,
       (SELECT max(month) FROM dw.fact_customer_rfm) AS stored_last;

-- name: changed_from
-- the month of the earliest order changed in the window; 'infinity' when none changed, and
-- the first month when an order was deleted (its month is gone with it)
SELECT CASE
    WHEN EXISTS (SELECT 1 FROM dw.etl_source_delete
                 WHERE source IN ('orders', 'order_items') AND deleted_at >= :lo
                   AND deleted_at < :hi)
        THEN DATE '-infinity'
    ELSE coalesce((SELECT date_trunc('month', min(ordered_at) AT TIME ZONE 'UTC')::date
                   FROM app.orders WHERE updated_at >= :lo AND updated_at < :hi),
                  DATE 'infinity')
    END::text;

-- name: clear
DELETE FROM dw.fact_customer_rfm WHERE month >= CAST(:from_month AS date);

-- name: rebuild
INSERT INTO dw.fact_customer_rfm (
    month, customer_id, customer_key, as_of, recency_days, frequency, monetary, month_orders,
    month_revenue, r_score, f_score, m_score, fm_score, segment, run_id)
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
),
rules AS (
    SELECT * FROM jsonb_to_recordset(CAST(:rules AS jsonb))
        AS x (name text, r_lo integer, r_hi integer, fm_lo integer, fm_hi integer)
)
SELECT s.month, s.customer_id, v.customer_key, s.as_of,
       floor(extract(epoch FROM s.as_of - s.last_at) / 86400)::integer,
       s.frequency, s.monetary, s.month_orders, s.month_revenue,
       s.r, s.f, s.m, round((s.f + s.m) / 2.0)::integer, ru.name, CAST(:run_id AS bigint)
FROM scored AS s
JOIN rules AS ru
  ON s.r BETWEEN ru.r_lo AND ru.r_hi AND round((s.f + s.m) / 2.0) BETWEEN ru.fm_lo AND ru.fm_hi
JOIN dw.dim_customer AS v
  ON v.customer_id = s.customer_id AND v.valid_from < s.as_of AND v.valid_to >= s.as_of;
