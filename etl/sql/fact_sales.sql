-- fact_sales: one row per order line. Keys: (order_id, line_no).
-- {scope} is filled in by the runner: TRUE for a full load, else a semi-join to _keys.

-- name: changed
-- Lines whose row or whose order changed in [lo, hi), and lines deleted in that window.
INSERT INTO _keys (order_id, line_no)
SELECT i.order_id, i.line_no FROM app.order_items AS i
WHERE i.updated_at >= :lo AND i.updated_at < :hi
UNION
SELECT i.order_id, i.line_no
FROM app.orders AS o JOIN app.order_items AS i ON i.order_id = o.id
WHERE o.updated_at >= :lo AND o.updated_at < :hi
UNION
SELECT d.key_id, d.line_no FROM dw.etl_source_delete AS d
WHERE d.source = 'order_items' AND d.key_id IS NOT NULL
  AND d.deleted_at >= :lo AND d.deleted_at < :hi
-- (in key order: the lookups that follow then walk each index forward)
ORDER BY 1, 2;

-- name: dates
-- (the lines' dates are their orders' dates: only the orders are read)
SELECT (min(o.ordered_at) AT TIME ZONE 'UTC')::date, (max(o.ordered_at) AT TIME ZONE 'UTC')::date
FROM app.orders AS o
WHERE {order_scope};

-- name: source
SELECT i.order_id,
       i.line_no,
       dw.date_key(o.ordered_at) AS date_key,
       o.ordered_at,
       dc.customer_key,
       dp.product_key,
       o.customer_id,
       i.product_id,
       o.status,
       o.channel,
       o.payment_method,
       i.quantity,
       i.unit_price,
       (i.quantity * i.unit_price)::numeric(14,2) AS gross,
       i.discount::numeric(14,2) AS discount,
       i.line_total::numeric(14,2) AS net,
       (i.quantity * dp.cost)::numeric(14,2) AS cost,
       (i.line_total - i.quantity * dp.cost)::numeric(14,2) AS margin
FROM app.order_items AS i
JOIN app.orders AS o ON o.id = i.order_id
LEFT JOIN dw.dim_customer AS dc
       ON dc.customer_id = o.customer_id
      AND o.ordered_at >= dc.valid_from AND o.ordered_at < dc.valid_to
LEFT JOIN dw.dim_product AS dp
       ON dp.product_id = i.product_id
      AND o.ordered_at >= dp.valid_from AND o.ordered_at < dp.valid_to
WHERE {scope}
