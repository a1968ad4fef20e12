-- fact_returns: one row per return request. Key: return_id. Keys are the dimension
-- versions current at requested_at; the product is the one on the returned order line.
-- Rows: the view dw.fact_returns_source (db/sql/0011_freshness_pipeline.sql).

-- name: changed
INSERT INTO _keys (return_id)
SELECT r.id FROM app.returns AS r
WHERE r.updated_at >= :lo AND r.updated_at < :hi
UNION
SELECT r.id
FROM app.order_items AS i JOIN app.returns AS r ON (r.order_id, r.line_no) = (i.order_id, i.line_no)
WHERE i.updated_at >= :lo AND i.updated_at < :hi
UNION
SELECT d.key_id FROM dw.etl_source_delete AS d
WHERE d.source = 'returns' AND d.key_id IS NOT NULL
  AND d.deleted_at >= :lo AND d.deleted_at < :hi
-- (in key order: the lookups that follow then walk each index forward)
ORDER BY 1;

-- name: dates
SELECT (min(r.requested_at) AT TIME ZONE 'UTC')::date, (max(r.requested_at) AT TIME ZONE 'UTC')::date
FROM app.returns AS r
WHERE {scope};
