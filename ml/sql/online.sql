-- Online features: the warehouse relations of the feature queries (ml/sql/orders.sql,
-- tickets.sql, customers.sql), computed from the operational tables for the customers
-- :customers (with every relation of theirs, so a history is whole). Each is the rows of
-- the view that defines the warehouse table over app (dw.<table>_source, which the ETL
-- loads from), with the natural ids standing for the dimension keys and each customer's
-- and product's current attributes as its one version, valid at every time. For an order
-- placed a moment ago these are the rows the next load writes; ml/online.py uses them for
-- objects the warehouse has not loaded yet.

-- name: fact_orders
SELECT s.order_id, s.date_key, s.ordered_at, s.customer_id AS customer_key, s.customer_id,
       s.status, s.channel, s.payment_method, s.item_count, s.line_count, s.gross,
       s.discount, s.net, s.hours_to_ship, s.hours_to_deliver, s.is_cancelled, s.is_returned
FROM dw.fact_orders_source AS s
WHERE s.customer_id = ANY(:customers)

-- name: fact_sales
SELECT s.order_id, s.line_no, s.date_key, s.ordered_at, s.customer_id AS customer_key,
       s.product_id AS product_key, s.customer_id, s.product_id, s.status, s.channel,
       s.payment_method, s.quantity, s.unit_price, s.gross, s.discount, s.net, s.cost,
       s.margin
FROM dw.fact_sales_source AS s
WHERE s.customer_id = ANY(:customers)

-- name: fact_returns
SELECT s.return_id, s.order_id, s.line_no, s.date_key, s.requested_at, s.decided_at,
       s.customer_id AS customer_key, s.product_id AS product_key, s.customer_id,
       s.product_id, s.reason, s.status, s.quantity, s.refund_amount
FROM dw.fact_returns_source AS s
WHERE s.customer_id = ANY(:customers)

-- name: fact_support
SELECT s.ticket_id, s.date_key, s.opened_at, s.resolved_at, s.customer_id AS customer_key,
       s.customer_id, s.order_id, s.category, s.priority, s.channel, s.status,
       s.resolution_hours, s.satisfaction, s.is_resolved
FROM dw.fact_support_source AS s
WHERE s.customer_id = ANY(:customers)

-- name: dim_customer
SELECT s.customer_id AS customer_key, s.customer_id, s.email, s.full_name, s.gender,
       s.birth_date, s.age_band, s.segment, s.country, s.region, s.city, s.signup_at,
       '-infinity'::timestamptz AS valid_from, 'infinity'::timestamptz AS valid_to,
       true AS is_current
FROM dw.dim_customer_source AS s
WHERE s.customer_id = ANY(:customers)

-- name: dim_product
SELECT s.product_id AS product_key, s.product_id, s.sku, s.name, s.category, s.subcategory,
       s.brand, s.list_price, s.cost, s.is_active,
       '-infinity'::timestamptz AS valid_from, 'infinity'::timestamptz AS valid_to,
       true AS is_current
FROM dw.dim_product_source AS s
WHERE s.product_id IN (SELECT i.product_id FROM app.order_items AS i
                       JOIN app.orders AS o ON o.id = i.order_id
                       WHERE o.customer_id = ANY(:customers))

-- name: customers_of_orders
SELECT DISTINCT customer_id FROM app.orders WHERE id = ANY(:ids)

-- name: customers_of_tickets
SELECT DISTINCT customer_id FROM app.support_tickets WHERE id = ANY(:ids)

-- name: customers_of_customers
SELECT id FROM app.customers WHERE id = ANY(:ids)
