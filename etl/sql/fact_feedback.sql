-- fact_feedback: one row per feedback. Key: feedback_id. Keys are the dimension versions
-- current at created_at; no product for feedback about an order only.

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

-- name: source
SELECT f.id AS feedback_id,
       dw.date_key(f.created_at) AS date_key,
       f.created_at,
       dc.customer_key,
       dp.product_key,
       f.customer_id,
       f.product_id,
       f.order_id,
       f.kind,
       f.rating,
       f.kind = 'complaint' AS is_complaint
FROM app.feedback AS f
LEFT JOIN dw.dim_customer AS dc
       ON dc.customer_id = f.customer_id
      AND f.created_at >= dc.valid_from AND f.created_at < dc.valid_to
LEFT JOIN dw.dim_product AS dp
       ON dp.product_id = f.product_id
      AND f.created_at >= dp.valid_from AND f.created_at < dp.valid_to
WHERE {scope}
