-- Features of a customer's next order for the order_value model (Customer.expectedOrderValue):
-- the current customer version, history up to now, and their usual basket: the channel they
-- use most, their median units and lines per order, the category they buy most.
-- A customer with no orders gets NULL basket numbers (imputed) and no channel/category
-- (ignored by the encoder).
-- The warehouse relations are placeholders (fact_orders, dim_customer ... in double braces):
-- dw.fact_orders ... for the warehouse, or the same rows computed from the operational
-- tables for objects not loaded yet (ml/online.py). One definition, two sources.
WITH scope AS NOT MATERIALIZED (
    {{scope}}
),
cutoff AS (  -- the features' instant: the start of the current UTC day (a daily score, so
             -- ml.customer_predictions can store it and serve it all day)
    SELECT date_trunc('day', now(), 'UTC') AS at
),
orders AS (
    SELECT f.customer_id,
           count(*)                                              AS prior_orders,
           avg(f.net)                                            AS prior_avg_value,
           mode() WITHIN GROUP (ORDER BY f.channel)              AS channel,
           percentile_disc(0.5) WITHIN GROUP (ORDER BY f.item_count) AS item_count,
           percentile_disc(0.5) WITHIN GROUP (ORDER BY f.line_count) AS line_count
    FROM scope AS s JOIN {{fact_orders}} AS f USING (customer_id)
    GROUP BY f.customer_id
),
categories AS (
    SELECT fs.customer_id,
           mode() WITHIN GROUP (ORDER BY p.category)             AS main_category,
           count(DISTINCT fs.order_id || ':' || p.category)::float8
               / count(DISTINCT fs.order_id)                     AS category_count
    FROM scope AS s
    JOIN {{fact_sales}} AS fs USING (customer_id)
    JOIN {{dim_product}} AS p ON p.product_key = fs.product_key
    GROUP BY fs.customer_id
),
recency AS (  -- orders that were not cancelled, before the cut-off, for churn_risk
    SELECT f.customer_id, count(*) AS orders, min(f.ordered_at) AS first_at,
           max(f.ordered_at) AS last_at,
           (array_agg(f.ordered_at ORDER BY f.ordered_at DESC))[2] AS prev_at,
           count(*) FILTER (WHERE f.ordered_at >= x.at - interval '90 days') AS orders_90d,
           count(*) FILTER (WHERE f.ordered_at >= x.at - interval '365 days') AS orders_365d,
           coalesce(sum(f.net) FILTER (WHERE f.ordered_at >= x.at - interval '365 days'), 0)
               AS revenue_365d
    FROM scope AS s CROSS JOIN cutoff AS x JOIN {{fact_orders}} AS f USING (customer_id)
    WHERE NOT f.is_cancelled AND f.ordered_at < x.at
    GROUP BY f.customer_id
)
SELECT c.customer_id                                            AS key,
       x.at                                                     AS event_at,
       c.segment,
       c.age_band,
       c.country,
       extract(epoch FROM x.at - c.signup_at)::float8 / 86400   AS tenure_days,
       coalesce(o.prior_orders, 0)::float8                      AS prior_orders,
       o.prior_avg_value::float8                                AS prior_avg_value,
       o.channel,
       o.item_count::float8                                     AS item_count,
       o.line_count::float8                                     AS line_count,
       k.main_category,
       round(k.category_count)::float8                          AS category_count,
       extract(month FROM x.at AT TIME ZONE 'UTC')::float8      AS month,
       -- churn_risk (Customer.churnRisk): as ml/sql/churn.sql with the cut-off of today
       extract(epoch FROM x.at - r.last_at)::float8 / 86400     AS recency_days,
       r.orders::float8                                         AS orders_total,
       r.orders_90d::float8                                     AS orders_90d,
       r.orders_365d::float8                                    AS orders_365d,
       r.revenue_365d::float8                                   AS revenue_365d,
       extract(epoch FROM r.last_at - r.first_at)::float8 / 86400
           / nullif(r.orders - 1, 0)                            AS mean_gap_days,
       extract(epoch FROM r.last_at - r.prev_at)::float8 / 86400 AS last_gap_days
FROM scope AS s
CROSS JOIN cutoff AS x
JOIN {{dim_customer}} AS c ON c.customer_id = s.customer_id AND c.is_current
LEFT JOIN orders AS o ON o.customer_id = c.customer_id
LEFT JOIN categories AS k ON k.customer_id = c.customer_id
LEFT JOIN recency AS r ON r.customer_id = c.customer_id
ORDER BY c.customer_id
