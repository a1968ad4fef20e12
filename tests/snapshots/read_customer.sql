-- params: [["Lit(value=['PAID', 'SHIPPED'])", "array:enum", null], ["Lit(value='100')", "decimal", null], ["Lit(value=2)", "int", null], ["Lit(value=['PAID', 'SHIPPED'])", "array:enum", null], ["Lit(value='100')", "decimal", null], ["Lit(value=2)", "int", null], ["Lit(value=['PAID', 'SHIPPED'])", "array:enum", null], ["Lit(value='100')", "decimal", null], ["Lit(value=2)", "int", null], ["Var(name='before', path=())", "decimal", ["totalAmount:desc,id:desc", 0]], ["Var(name='before', path=())", "id", ["totalAmount:desc,id:desc", 1]], ["Var(name='id', path=())", "id", null]]
SELECT json_build_object('customer',
(SELECT json_build_object('id', (t1.id)::text, 'segment', upper(t1.segment), 'signupAt', t1.signup_at, 'summary',
(SELECT json_build_object('orderCount', t2.order_count, 'lifetimeValue', round((t2.lifetime_value)::numeric, 2)::text, 'returnRate', (t2.return_rate)::float8)
FROM app.customer_summary AS t2
WHERE t2.customer_id = t1.id), 'expectedOrderValue', json_build_object('cdms:pending', t1.id), 'orders',
(SELECT json_build_object('totalCount',
(SELECT count(*)
FROM app.orders AS t4
WHERE t4.customer_id = t1.id AND t4.status = ANY(%(p0)s::text[]) AND ((t4.total_amount >= %(p1)s::numeric) OR (EXISTS
(SELECT 1
FROM app.order_items AS f5
WHERE f5.order_id = t4.id AND f5.quantity > %(p2)s::bigint)))), 'aggregate',
(SELECT json_build_object('count', count(*), 'avg', json_build_object('totalAmount', round((avg(t6.total_amount))::numeric, 2)::text), 'max', json_build_object('orderedAt', max(t6.ordered_at)))
FROM app.orders AS t6
WHERE t6.customer_id = t1.id AND t6.status = ANY(%(p3)s::text[]) AND ((t6.total_amount >= %(p4)s::numeric) OR (EXISTS
(SELECT 1
FROM app.order_items AS f7
WHERE f7.order_id = t6.id AND f7.quantity > %(p5)s::bigint)))), 'pageInfo', json_build_object('hasPreviousPage', count(*) > 5, 'startCursor', (array_agg(rtrim(translate(encode(convert_to(json_build_array('totalAmount:desc,id:desc', x3.total_amount, x3.id)::text, 'UTF8'), 'base64'), E'+/\n', '-_'), '=')
ORDER BY x3.__rn DESC) FILTER (WHERE x3.__rn <= 5))[1]), 'edges', coalesce(json_agg(json_build_object('cursor', rtrim(translate(encode(convert_to(json_build_array('totalAmount:desc,id:desc', x3.total_amount, x3.id)::text, 'UTF8'), 'base64'), E'+/\n', '-_'), '='), 'node', json_build_object('id', (x3.id)::text))
ORDER BY x3.__rn DESC) FILTER (WHERE x3.__rn <= 5), '[]'::json))
FROM
(SELECT t8.*, row_number() OVER (ORDER BY t8.total_amount ASC, t8.id ASC) AS __rn
FROM app.orders AS t8
WHERE t8.customer_id = t1.id AND t8.status = ANY(%(p6)s::text[]) AND ((t8.total_amount >= %(p7)s::numeric) OR (EXISTS
(SELECT 1
FROM app.order_items AS f9
WHERE f9.order_id = t8.id AND f9.quantity > %(p8)s::bigint))) AND (t8.total_amount, t8.id) > (%(p9)s::numeric, %(p10)s::bigint)
ORDER BY t8.total_amount ASC, t8.id ASC
LIMIT 6) AS x3))
FROM app.customers AS t1
WHERE t1.id = %(p11)s::bigint)) AS data
