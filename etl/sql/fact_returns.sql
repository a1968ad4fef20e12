-- fact_returns: one row per return request. Key: return_id. Keys are the dimension
-- versions current at requested_at; the product is the one on the returned order line.

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

-- name: source
SELECT r.id AS return_id,
       r.order_id,
       r.line_no,
       dw.date_key(r.requested_at) AS date_key,
       r.requested_at,
       r.decided_at,
       dc.customer_key,
       dp.product_key,
       r.customer_id,
       i.product_id,
       r.reason,
       r.status,
       r.quantity,
       r.refund_amount::numeric(14,2) AS refund_amount
FROM app.returns AS r
JOIN app.order_items AS i ON i.order_id = r.order_id AND i.line_no = r.line_no
LEFT JOIN dw.dim_customer AS dc
       ON dc.customer_id = r.customer_id
      AND r.requested_at >= dc.valid_from AND r.requested_at < dc.valid_to
LEFT JOIN dw.dim_product AS dp
       ON dp.product_id = i.product_id
      AND r.requested_at >= dp.valid_from AND r.requested_at < dp.valid_to
WHERE {scope}
