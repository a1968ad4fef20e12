-- fact_feedback: one row per feedback. Key: feedback_id. Keys are the dimension versions
-- current at created_at; no product for feedback about an order only.
-- Rows: the view dw.fact_feedback_source (db/sql/0011_freshness_pipeline.sql).

-- name: changed
INSERT INTO _keys (feedback_id)
SELECT f.id FROM app.feedback AS f
WHERE f.updated_at >= :lo AND f.updated_at < :hi
UNION
SELECT d.key_id FROM dw.etl_source_delete AS d
WHERE d.source = 'feedback' AND d.key_id IS NOT NULL
  AND d.deleted_at >= :lo AND d.deleted_at < :hi
-- (in key order: the lookups that follow then walk each index forward)
ORDER BY 1;

-- name: dates
SELECT (min(f.created_at) AT TIME ZONE 'UTC')::date, (max(f.created_at) AT TIME ZONE 'UTC')::date
FROM app.feedback AS f
WHERE {scope};
