-- fact_sales: one row per order line. Keys: (order_id, line_no).
-- Rows: the view dw.fact_sales_source (db/sql/0011_freshness_pipeline.sql).

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
