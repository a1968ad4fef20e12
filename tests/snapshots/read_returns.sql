-- params: []
SELECT json_build_object('returns',
(SELECT json_build_object('edges', coalesce(json_agg(json_build_object('node', json_build_object('id', (x1.id)::text, 'reason', upper(x1.reason), 'refundAmount', (x1.refund_amount)::text, 'order',
(SELECT json_build_object('id', (t2.id)::text)
FROM app.orders AS t2
WHERE t2.id = x1.order_id)))
ORDER BY x1.__rn DESC) FILTER (WHERE x1.__rn <= 2), '[]'::json))
FROM
(SELECT t3.*, row_number() OVER (ORDER BY t3.requested_at ASC, t3.id ASC) AS __rn
FROM app.returns AS t3
ORDER BY t3.requested_at ASC, t3.id ASC
LIMIT 3) AS x1)) AS data
