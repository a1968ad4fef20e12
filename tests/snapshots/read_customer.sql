-- params: [["Lit(value=['PAID', 'SHIPPED'])", "array:enum", null], ["Lit(value='100')", "decimal", null], ["Lit(value=2)", "int", null], ["Lit(value=['PAID', 'SHIPPED'])", "array:enum", null], ["Lit(value='100')", "decimal", null], ["Lit(value=2)", "int", null], ["Lit(value=['PAID', 'SHIPPED'])", "array:enum", null], ["Lit(value='100')", "decimal", null], ["Lit(value=2)", "int", null], ["Var(name='before', path=())", "decimal", ["totalAmount:desc,id:desc", 0]], ["Var(name='before', path=())", "id", ["totalAmount:desc,id:desc", 1]], ["Var(name='id', path=())", "id", null]]
SELECT json_build_object('customer',
(SELECT json_build_object('id', (t1.id)::text, 'segment', upper(t1.segment), 'signupAt', t1.signup_at, 'summary',
(SELECT json_build_object('orderCount', t2.order_count, 'lifetimeValue', round((t2.lifetime_value)::numeric, 2)::text, 'returnRate', (t2.return_rate)::float8)
FROM app.customer_summary AS t2
WHERE t2.customer_id = t1.id), 'expectedOrderValue', coalesce(CASE WHEN p3.order_value_version =
(SELECT v.version
FROM ml.model_version AS v
WHERE v.name = 'order_value' AND v.active) AND p3.as_of = date_trunc('day', now(), 'UTC') THEN p3.order_value_doc END, json_build_object('cdms:pending', t1.id)), 'orders',
(SELECT json_build_object('totalCount',
(SELECT count(*)
FROM app.orders AS t5
WHERE t5.customer_id = t1.id AND t5.status = ANY(%(p0)s::text[]) AND ((t5.total_amount >= %(p1)s::numeric) OR (EXISTS
(SELECT 1
FROM app.order_items AS f6
WHERE f6.order_id = t5.id AND f6.quantity > %(p2)s::bigint)))), 'aggregate',
(SELECT json_build_object('count', count(*), 'avg', json_build_object('totalAmount', round((avg(t7.total_amount))::numeric, 2)::text), 'max', json_build_object('orderedAt', max(t7.ordered_at)))
FROM app.orders AS t7
WHERE t7.customer_id = t1.id AND t7.status = ANY(%(p3)s::text[]) AND ((t7.total_amount >= %(p4)s::numeric) OR (EXISTS
(SELECT 1
FROM app.order_items AS f8
WHERE f8.order_id = t7.id AND f8.quantity > %(p5)s::bigint)))), 'pageInfo', json_build_object('hasPreviousPage', count(*) > 5, 'startCursor', (array_agg(rtrim(translate(encode(convert_to(json_build_array('totalAmount:desc,id:desc', x4.total_amount, x4.id)::text, 'UTF8'), 'base64'), E'+/\n', '-_'), '=')
ORDER BY x4.__rn DESC) FILTER (WHERE x4.__rn <= 5))[1]), 'edges', coalesce(json_agg(json_build_object('cursor', rtrim(translate(encode(convert_to(json_build_array('totalAmount:desc,id:desc', x4.total_amount, x4.id)::text, 'UTF8'), 'base64'), E'+/\n', '-_'), '='), 'node', json_build_object('id', (x4.id)::text))
ORDER BY x4.__rn DESC) FILTER (WHERE x4.__rn <= 5), '[]'::json))
FROM
(SELECT t9.*, row_number() OVER (ORDER BY t9.total_amount ASC, t9.id ASC) AS __rn
FROM app.orders AS t9
WHERE t9.customer_id = t1.id AND t9.status = ANY(%(p6)s::text[]) AND ((t9.total_amount >= %(p7)s::numeric) OR (EXISTS
(SELECT 1
FROM app.order_items AS f10
WHERE f10.order_id = t9.id AND f10.quantity > %(p8)s::bigint))) AND (t9.total_amount, t9.id) > (%(p9)s::numeric, %(p10)s::bigint)
ORDER BY t9.total_amount ASC, t9.id ASC
LIMIT 6) AS x4))
FROM app.customers AS t1
LEFT JOIN ml.customer_predictions AS p3 ON p3.customer_id = t1.id
WHERE t1.id = %(p11)s::bigint)) AS data
