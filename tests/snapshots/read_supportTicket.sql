-- params: [["Lit(value='9')", "id", null]]
SELECT json_build_object('supportTicket',
(SELECT json_build_object('id', (t1.id)::text, 'status', upper(t1.status), 'openedAt', t1.opened_at, 'predictedStatus', coalesce(CASE WHEN p2.support_status_version =
(SELECT v.version
FROM ml.model_version AS v
WHERE v.name = 'support_status' AND v.active) THEN json_build_object('label', p2.support_status_label) END, json_build_object('cdms:pending', t1.id)), 'order',
(SELECT json_build_object('id', (t3.id)::text)
FROM app.orders AS t3
WHERE t3.id = t1.order_id))
FROM app.support_tickets AS t1
LEFT JOIN ml.ticket_predictions AS p2 ON p2.ticket_id = t1.id
WHERE t1.id = %(p0)s::bigint)) AS data
