-- Features of support tickets as of their opening (no look-ahead), for the tickets of the
-- scope. Target: resolved (status resolved or closed) or unresolved.
-- Earlier tickets count as resolved only if they were resolved before this one opened.
-- The warehouse relations are placeholders (fact_orders, dim_customer ... in double braces):
-- dw.fact_orders ... for the warehouse, or the same rows computed from the operational
-- tables for objects not loaded yet (ml/online.py). One definition, two sources.
WITH scope AS NOT MATERIALIZED (
    {{scope}}
)
SELECT t.ticket_id                                              AS key,
       t.opened_at                                              AS event_at,
       CASE WHEN t.is_resolved THEN 'resolved' ELSE 'unresolved' END AS outcome,
       t.category,
       t.priority,
       t.channel,
       c.segment,
       extract(epoch FROM t.opened_at - c.signup_at)::float8 / 86400 AS tenure_days,
       po.prior_orders::float8                                  AS prior_orders,
       pt.prior_tickets::float8                                 AS prior_tickets,
       pt.prior_resolved::float8 / nullif(pt.prior_tickets, 0)  AS prior_resolved_rate,
       o.net::float8                                            AS order_value
FROM scope AS s
JOIN {{fact_support}} AS t USING (ticket_id)
JOIN {{dim_customer}} AS c ON c.customer_key = t.customer_key
LEFT JOIN {{fact_orders}} AS o ON o.order_id = t.order_id
CROSS JOIN LATERAL (
    SELECT count(*) AS prior_orders
    FROM {{fact_orders}} AS fo
    WHERE fo.customer_id = t.customer_id AND fo.ordered_at < t.opened_at
) AS po
CROSS JOIN LATERAL (
    SELECT count(*) AS prior_tickets,
           count(*) FILTER (WHERE p.resolved_at < t.opened_at) AS prior_resolved
    FROM {{fact_support}} AS p
    WHERE p.customer_id = t.customer_id
      AND (p.opened_at, p.ticket_id) < (t.opened_at, t.ticket_id)
) AS pt
ORDER BY t.opened_at, t.ticket_id
