-- fact_orders: one row per order. Key: order_id. Totals are summed over the lines, so they
-- agree with fact_sales by construction (the checks compare them with app.orders totals).

-- name: changed
INSERT INTO _keys (order_id)
SELECT o.id FROM app.orders AS o
WHERE o.updated_at >= :lo AND o.updated_at < :hi
UNION
SELECT i.order_id FROM app.order_items AS i
WHERE i.updated_at >= :lo AND i.updated_at < :hi
UNION
SELECT d.key_id FROM dw.etl_source_delete AS d
WHERE d.source IN ('orders', 'order_items') AND d.key_id IS NOT NULL
  AND d.deleted_at >= :lo AND d.deleted_at < :hi
-- (in key order: the lookups that follow then walk each index forward)
ORDER BY 1;

-- name: dates
SELECT (min(o.ordered_at) AT TIME ZONE 'UTC')::date, (max(o.ordered_at) AT TIME ZONE 'UTC')::date
FROM app.orders AS o
WHERE {scope};

-- name: source
SELECT o.id AS order_id,
       dw.date_key(o.ordered_at) AS date_key,
       o.ordered_at,
       dc.customer_key,
       o.customer_id,
       o.status,
       o.channel,
       o.payment_method,
       coalesce(sum(i.quantity), 0)::integer AS item_count,
       count(i.line_no)::integer AS line_count,
       coalesce(sum(i.quantity * i.unit_price), 0)::numeric(14,2) AS gross,
       coalesce(sum(i.discount), 0)::numeric(14,2) AS discount,
       coalesce(sum(i.line_total), 0)::numeric(14,2) AS net,
       round(EXTRACT(EPOCH FROM o.shipped_at - o.ordered_at) / 3600, 2)::numeric(12,2)
           AS hours_to_ship,
       round(EXTRACT(EPOCH FROM o.delivered_at - o.ordered_at) / 3600, 2)::numeric(12,2)
           AS hours_to_deliver,
       o.status = 'cancelled' AS is_cancelled,
       o.status = 'returned' AS is_returned
FROM app.orders AS o
LEFT JOIN app.order_items AS i ON i.order_id = o.id
LEFT JOIN dw.dim_customer AS dc
       ON dc.customer_id = o.customer_id
      AND o.ordered_at >= dc.valid_from AND o.ordered_at < dc.valid_to
WHERE {scope}
GROUP BY o.id, dc.customer_key
