-- Features of orders as of the moment each was placed (no look-ahead), for the orders of
-- the scope. Used by order_status (target: status) and order_value (target: net).
--
-- The customer's history comes from window functions over their earlier orders
-- (ROWS ... 1 PRECEDING: strictly before this one). A cancellation is only known once it
-- happens, and dw keeps no cancellation time, so the cancel rate counts orders placed at
-- least 30 days before (by then every order of the generator is settled). Returns count
-- the requests made before the order (dw.fact_returns.requested_at). The customer and
-- product attributes are the SCD2 versions current at ordered_at (the facts' keys).
WITH scope AS NOT MATERIALIZED (
    {{scope}}
),
history AS (
    SELECT f.order_id,
           count(*) OVER prior                               AS prior_orders,
           sum(f.line_count) OVER prior                      AS prior_lines,
           avg(f.net) OVER prior                             AS prior_avg_value,
           count(*) FILTER (WHERE f.is_cancelled) OVER settled AS settled_cancelled,
           count(*) OVER settled                             AS settled_orders
    FROM dw.fact_orders AS f
    WHERE f.customer_id IN (SELECT o.customer_id
                            FROM dw.fact_orders AS o JOIN scope AS s USING (order_id))
    WINDOW prior   AS (PARTITION BY f.customer_id ORDER BY f.ordered_at, f.order_id
                       ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
           settled AS (PARTITION BY f.customer_id ORDER BY f.ordered_at
                       RANGE BETWEEN UNBOUNDED PRECEDING AND INTERVAL '30 days' PRECEDING)
)
SELECT f.order_id                                               AS key,
       f.ordered_at                                             AS event_at,
       f.status                                                 AS status,
       f.net::float8                                            AS net,
       c.segment,
       c.age_band,
       c.country,
       extract(epoch FROM f.ordered_at - c.signup_at)::float8 / 86400 AS tenure_days,
       h.prior_orders::float8                                   AS prior_orders,
       h.settled_cancelled::float8 / nullif(h.settled_orders, 0) AS prior_cancel_rate,
       r.returns::float8 / nullif(h.prior_lines, 0)             AS prior_return_rate,
       h.prior_avg_value::float8                                AS prior_avg_value,
       f.channel,
       f.payment_method,
       f.item_count::float8                                     AS item_count,
       f.line_count::float8                                     AS line_count,
       f.gross::float8                                          AS basket_value,
       (f.discount / nullif(f.gross, 0))::float8                AS discount_rate,
       b.main_category,
       b.category_count::float8                                 AS category_count,
       d.day_of_week::float8                                    AS day_of_week,
       d.month::float8                                          AS month
FROM scope AS s
JOIN dw.fact_orders AS f USING (order_id)
JOIN history AS h USING (order_id)
JOIN dw.dim_customer AS c ON c.customer_key = f.customer_key
JOIN dw.dim_date AS d ON d.date_key = f.date_key
-- the basket by category, read through the fact's primary key (order_id, line_no)
LEFT JOIN LATERAL (
    SELECT count(*) AS category_count,
           (array_agg(bc.category ORDER BY bc.units DESC, bc.category))[1] AS main_category
    FROM (SELECT p.category, sum(fs.quantity) AS units
          FROM dw.fact_sales AS fs
          JOIN dw.dim_product AS p ON p.product_key = fs.product_key
          WHERE fs.order_id = f.order_id
          GROUP BY p.category) AS bc
) AS b ON true
CROSS JOIN LATERAL (
    SELECT count(*) AS returns
    FROM dw.fact_returns AS fr
    WHERE fr.customer_id = f.customer_id AND fr.requested_at < f.ordered_at
) AS r
ORDER BY f.ordered_at, f.order_id
