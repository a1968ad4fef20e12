-- Churn features of customers as of a cut-off instant (no look-ahead: only orders placed
-- before the cut-off), for the (customer, cut-off) pairs of the scope. Target: 'churned'
-- when the customer places no order that is not cancelled in the 90 days from the cut-off,
-- else 'active' (a cut-off less than 90 days old has no final target: training settles).
-- Training cut-offs: the first instant of every UTC month, for every customer with at
-- least one order (not cancelled) before it. Gaps are between such orders.
WITH scope AS NOT MATERIALIZED (
    {{scope}}
)
SELECT s.customer_id                                                      AS key,
       s.cutoff                                                           AS event_at,
       CASE WHEN EXISTS (SELECT 1 FROM {{fact_orders}} AS n
                         WHERE n.customer_id = s.customer_id AND NOT n.is_cancelled
                           AND n.ordered_at >= s.cutoff
                           AND n.ordered_at < s.cutoff + interval '90 days')
            THEN 'active' ELSE 'churned' END                              AS churn,
       c.segment,
       c.country,
       extract(epoch FROM s.cutoff - c.signup_at)::float8 / 86400         AS tenure_days,
       extract(epoch FROM s.cutoff - a.last_at)::float8 / 86400           AS recency_days,
       a.orders::float8                                                   AS orders_total,
       a.orders_90d::float8                                               AS orders_90d,
       a.orders_365d::float8                                              AS orders_365d,
       a.revenue_365d::float8                                             AS revenue_365d,
       extract(epoch FROM a.last_at - a.first_at)::float8 / 86400
           / nullif(a.orders - 1, 0)                                      AS mean_gap_days,
       extract(epoch FROM a.last_at - p.prev_at)::float8 / 86400          AS last_gap_days
FROM scope AS s
CROSS JOIN LATERAL (
    SELECT count(*) AS orders, min(o.ordered_at) AS first_at, max(o.ordered_at) AS last_at,
           count(*) FILTER (WHERE o.ordered_at >= s.cutoff - interval '90 days') AS orders_90d,
           count(*) FILTER (WHERE o.ordered_at >= s.cutoff - interval '365 days') AS orders_365d,
           coalesce(sum(o.net) FILTER (WHERE o.ordered_at >= s.cutoff - interval '365 days'),
                    0) AS revenue_365d
    FROM {{fact_orders}} AS o
    WHERE o.customer_id = s.customer_id AND NOT o.is_cancelled AND o.ordered_at < s.cutoff
) AS a
LEFT JOIN LATERAL (
    SELECT o.ordered_at AS prev_at
    FROM {{fact_orders}} AS o
    WHERE o.customer_id = s.customer_id AND NOT o.is_cancelled AND o.ordered_at < a.last_at
    ORDER BY o.ordered_at DESC LIMIT 1
) AS p ON true
CROSS JOIN LATERAL (  -- the version valid at the cut-off (else the first one)
    SELECT v.segment, v.country, v.signup_at
    FROM {{dim_customer}} AS v
    WHERE v.customer_id = s.customer_id
    ORDER BY (v.valid_from <= s.cutoff) DESC, v.valid_from DESC LIMIT 1
) AS c
WHERE a.orders > 0
ORDER BY s.cutoff, s.customer_id
