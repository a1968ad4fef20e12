-- params: [["Var(name='f', path=('status', 'eq'))", "enum", null], ["Var(name='f', path=('customer', 'some', 'segment', 'ne'))", "enum", null], ["Var(name='f', path=('status', 'eq'))", "enum", null], ["Var(name='f', path=('customer', 'some', 'segment', 'ne'))", "enum", null], ["Var(name='after', path=())", "datetime", ["orderedAt:desc,id:desc", 0]], ["Var(name='after', path=())", "id", ["orderedAt:desc,id:desc", 1]]]
SELECT json_build_object('orders',
(SELECT json_build_object('totalCount',
(SELECT count(*)
FROM app.orders AS t2
WHERE t2.status = %(p0)s::text AND EXISTS
(SELECT 1
FROM app.customers AS f3
WHERE f3.id = t2.customer_id AND f3.segment <> %(p1)s::text)), 'pageInfo', json_build_object('hasNextPage', count(*) > 20, 'endCursor', (array_agg(rtrim(translate(encode(convert_to(json_build_array('orderedAt:desc,id:desc', x1.ordered_at, x1.id)::text, 'UTF8'), 'base64'), E'+/\n', '-_'), '=')
ORDER BY x1.__rn DESC) FILTER (WHERE x1.__rn <= 20))[1]), 'edges', coalesce(json_agg(json_build_object('cursor', rtrim(translate(encode(convert_to(json_build_array('orderedAt:desc,id:desc', x1.ordered_at, x1.id)::text, 'UTF8'), 'base64'), E'+/\n', '-_'), '='), 'node', json_build_object('id', (x1.id)::text, 'totalAmount', (x1.total_amount)::text))
ORDER BY x1.__rn ASC) FILTER (WHERE x1.__rn <= 20), '[]'::json))
FROM
(SELECT t4.*, row_number() OVER (ORDER BY t4.ordered_at DESC, t4.id DESC) AS __rn
FROM app.orders AS t4
WHERE t4.status = %(p2)s::text AND EXISTS
(SELECT 1
FROM app.customers AS f5
WHERE f5.id = t4.customer_id AND f5.segment <> %(p3)s::text) AND (t4.ordered_at, t4.id) < (%(p4)s::timestamptz, %(p5)s::bigint)
ORDER BY t4.ordered_at DESC, t4.id DESC
LIMIT 21) AS x1)) AS data
