-- Features of orders as of the moment each was placed (no look-ahead), for the orders of
-- the scope. Used by order_status (target: status) and order_value (target: net).
--
-- Set-based: scans, sorts and hash joins for a large scope, index lookups for a few ids,
-- no subquery per order; the derived tables joined to the scope are the history and the
-- scope's baskets (materialized once), so a scope whose size the planner underestimates
-- cannot make it rescan an aggregate per order.
--
-- The history is one timeline per customer of the scope: their orders and their return
-- requests (fact_returns.requested_at), and window functions
-- over it. ROWS ... 1 PRECEDING is strictly before this order: earlier orders (ties on
-- ordered_at broken by order_id) and the returns requested before ordered_at (a request
-- at the very same instant sorts after the orders: not "before"). A cancellation is only
-- known once it happens, and dw keeps no cancellation time, so the cancel rate counts
-- orders placed at least 30 days before (by then every order of the generator is settled).
-- The basket: units per category; the main category is the one with most units (ties: the
-- first by name); an order without lines has 0 categories and no main category. The
-- customer and product attributes are the SCD2 versions current at ordered_at (the facts'
-- keys).
--
-- The warehouse relations are placeholders (fact_orders, dim_customer ... in double braces):
-- dw.fact_orders ... for the warehouse, or the same rows computed from the operational
-- tables for objects not loaded yet (ml/online.py). One definition, two sources.
--
-- tests/ml/sql/orders_lateral.sql is the earlier formulation (two LATERAL subqueries per
-- order); tests/ml/test_orders_sql.py checks that both return the same rows.
WITH scope AS NOT MATERIALIZED (
    {{scope}}
),
customers AS NOT MATERIALIZED (
    SELECT o.customer_id FROM {{fact_orders}} AS o JOIN scope AS s USING (order_id)
),
-- the scope's baskets (the history needs none: a small scope reads the lines of its own
-- orders only, not of its customers' whole history)
baskets AS MATERIALIZED (
    SELECT bc.order_id,
           count(bc.category) AS category_count,
           (array_agg(bc.category ORDER BY bc.units DESC, bc.category))[1] AS main_category
    FROM (SELECT f.order_id, p.category, sum(fs.quantity) AS units
          FROM scope AS s
          JOIN {{fact_orders}} AS f USING (order_id)
          LEFT JOIN ({{fact_sales}} AS fs JOIN {{dim_product}} AS p
                     ON p.product_key = fs.product_key) ON fs.order_id = f.order_id
          GROUP BY f.order_id, p.category) AS bc
    GROUP BY bc.order_id
),
timeline AS (
    SELECT f.customer_id, f.ordered_at AS at, true AS is_order, f.order_id,
           f.line_count, f.net, f.is_cancelled
    FROM {{fact_orders}} AS f
    WHERE f.customer_id IN (SELECT customer_id FROM customers)
    UNION ALL
    SELECT fr.customer_id, fr.requested_at, false, NULL, NULL, NULL, false
    FROM {{fact_returns}} AS fr
    WHERE fr.customer_id IN (SELECT customer_id FROM customers)
),
history AS MATERIALIZED (
    SELECT e.order_id,
           count(*) FILTER (WHERE e.is_order) OVER prior          AS prior_orders,
           sum(e.line_count) FILTER (WHERE e.is_order) OVER prior AS prior_lines,
           avg(e.net) FILTER (WHERE e.is_order) OVER prior        AS prior_avg_value,
           count(*) FILTER (WHERE NOT e.is_order) OVER prior      AS prior_returns,
           count(*) FILTER (WHERE e.is_cancelled) OVER settled    AS settled_cancelled,
           count(*) FILTER (WHERE e.is_order) OVER settled        AS settled_orders
    FROM timeline AS e
    WINDOW prior   AS (PARTITION BY e.customer_id ORDER BY e.at, e.is_order DESC, e.order_id
                       ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
           settled AS (PARTITION BY e.customer_id ORDER BY e.at
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
       h.prior_returns::float8 / nullif(h.prior_lines, 0)       AS prior_return_rate,
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
JOIN {{fact_orders}} AS f USING (order_id)
JOIN history AS h USING (order_id)
JOIN baskets AS b USING (order_id)
JOIN {{dim_customer}} AS c ON c.customer_key = f.customer_key
JOIN dw.dim_date AS d ON d.date_key = f.date_key
ORDER BY f.ordered_at, f.order_id
