-- fact_support: one row per support ticket. Key: ticket_id. customer_key is the version
-- current at opened_at.

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

-- name: source
SELECT t.id AS ticket_id,
       dw.date_key(t.opened_at) AS date_key,
       t.opened_at,
       t.resolved_at,
       dc.customer_key,
       t.customer_id,
       t.order_id,
       t.category,
       t.priority,
       t.channel,
       t.status,
       round(EXTRACT(EPOCH FROM t.resolved_at - t.opened_at) / 3600, 2)::numeric(12,2)
           AS resolution_hours,
       t.satisfaction,
       t.status IN ('resolved', 'closed') AS is_resolved
FROM app.support_tickets AS t
LEFT JOIN dw.dim_customer AS dc
       ON dc.customer_id = t.customer_id
      AND t.opened_at >= dc.valid_from AND t.opened_at < dc.valid_to
WHERE {scope}
