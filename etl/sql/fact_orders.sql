-- fact_orders: one row per order. Key: order_id. Totals are summed over the lines, so they
-- agree with fact_sales by construction (the checks compare them with app.orders totals).
-- Rows: the view dw.fact_orders_source (db/sql/0011_freshness_pipeline.sql).

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
