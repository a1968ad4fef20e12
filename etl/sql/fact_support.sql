-- fact_support: one row per support ticket. Key: ticket_id. customer_key is the version
-- current at opened_at.
-- Rows: the view dw.fact_support_source (db/sql/0011_freshness_pipeline.sql).

-- name: changed
INSERT INTO _keys (ticket_id)
SELECT t.id FROM app.support_tickets AS t
WHERE t.updated_at >= :lo AND t.updated_at < :hi
UNION
SELECT d.key_id FROM dw.etl_source_delete AS d
WHERE d.source = 'support_tickets' AND d.key_id IS NOT NULL
  AND d.deleted_at >= :lo AND d.deleted_at < :hi
-- (in key order: the lookups that follow then walk each index forward)
ORDER BY 1;

-- name: dates
SELECT (min(t.opened_at) AT TIME ZONE 'UTC')::date, (max(t.opened_at) AT TIME ZONE 'UTC')::date
FROM app.support_tickets AS t
WHERE {scope};
