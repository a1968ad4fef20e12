-- params: [["Var(name='id', path=())", "id", null]]
SELECT json_build_object('order',
(SELECT json_build_object('id', (t1.id)::text, 'status', upper(t1.status), 'totalAmount', (t1.total_amount)::text, 'orderedAt', t1.ordered_at, 'predictedStatus', coalesce(CASE WHEN p2.order_status_version =
(SELECT v.version
FROM ml.model_version AS v
WHERE v.name = 'order_status' AND v.active) THEN p2.order_status_doc END, json_build_object('cdms:pending', t1.id)), 'predictedTotal', coalesce(CASE WHEN p2.order_value_version =
(SELECT v.version
FROM ml.model_version AS v
WHERE v.name = 'order_value' AND v.active) THEN json_build_object('value', (p2.order_value_value)::float8, 'model', json_build_object('version', p2.order_value_version)) END, json_build_object('cdms:pending', t1.id)), 'customer',
(SELECT json_build_object('email', t3.email)
FROM app.customers AS t3
WHERE t3.id = t1.customer_id), 'items',
(SELECT coalesce(json_agg(json_build_object('lineNo', t4.line_no, 'unitPrice', (t4.unit_price)::text, 'product',
(SELECT json_build_object('sku', t5.sku)
FROM app.products AS t5
WHERE t5.id = t4.product_id))
ORDER BY t4.line_no ASC, t4.order_id ASC, t4.line_no ASC), '[]'::json)
FROM app.order_items AS t4
WHERE t4.order_id = t1.id), 'statusHistory',
(SELECT coalesce(json_agg(json_build_object('fromStatus', upper(t6.from_status), 'toStatus', upper(t6.to_status), 'changedAt', t6.changed_at)
ORDER BY t6.changed_at ASC, t6.id ASC), '[]'::json)
FROM app.order_status_history AS t6
WHERE t6.order_id = t1.id), 'returns', json_build_object('totalCount',
(SELECT count(*)
FROM app.returns AS t7
WHERE t7.order_id = t1.id)))
FROM app.orders AS t1
LEFT JOIN ml.order_predictions AS p2 ON p2.order_id = t1.id
WHERE t1.id = %(p0)s::bigint)) AS data
