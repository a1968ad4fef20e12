-- params: {"p0": "paid", "p1": "shipped", "p2": "100", "p3": 2, "p4": "120.00", "p5": 42, "p6": "paid", "p7": "shipped", "p8": "100", "p9": 2, "p10": "paid", "p11": "shipped", "p12": "100", "p13": 2, "p14": 7}
SELECT json_build_object('customer',
(SELECT json_build_object('id', (t1.id)::text, 'segment', upper(t1.segment), 'signupAt', to_char(t1.signup_at, CASE WHEN date_trunc('second', t1.signup_at) = t1.signup_at THEN 'YYYY-MM-DD"T"HH24:MI:SSTZH:TZM' ELSE 'YYYY-MM-DD"T"HH24:MI:SS.USTZH:TZM' END), 'orders',
(SELECT json_build_object('totalCount',
(SELECT count(*)
FROM app.orders AS t4
WHERE t4.customer_id = t1.id AND t4.status IN (%(p6)s::VARCHAR, %(p7)s::VARCHAR) AND (t4.total_amount >= %(p8)s OR (EXISTS
(SELECT * 
FROM app.order_items AS order_items_1 
WHERE order_items_1.order_id = t4.id AND order_items_1.quantity > %(p9)s::INTEGER)))), 'aggregate',
(SELECT json_build_object('count', count(*), 'avg', json_build_object('totalAmount', (round((CASE WHEN abs(((avg(t5.total_amount))::numeric * 100) - trunc(((avg(t5.total_amount))::numeric * 100))) = 0.5 THEN trunc(((avg(t5.total_amount))::numeric * 100)) + CASE WHEN mod(trunc(((avg(t5.total_amount))::numeric * 100)), 2) <> 0 THEN sign(((avg(t5.total_amount))::numeric * 100)) ELSE 0 END ELSE round(((avg(t5.total_amount))::numeric * 100)) END) / 100.0, 2))::text), 'max', json_build_object('orderedAt', to_char(max(t5.ordered_at), CASE WHEN date_trunc('second', max(t5.ordered_at)) = max(t5.ordered_at) THEN 'YYYY-MM-DD"T"HH24:MI:SSTZH:TZM' ELSE 'YYYY-MM-DD"T"HH24:MI:SS.USTZH:TZM' END)))
FROM app.orders AS t5
WHERE t5.customer_id = t1.id AND t5.status IN (%(p10)s::VARCHAR, %(p11)s::VARCHAR) AND (t5.total_amount >= %(p12)s OR (EXISTS
(SELECT * 
FROM app.order_items AS order_items_1 
WHERE order_items_1.order_id = t5.id AND order_items_1.quantity > %(p13)s::INTEGER)))), 'pageInfo', json_build_object('hasPreviousPage', count(*) > 5, 'startCursor', (array_agg(rtrim(translate(encode(convert_to(concat('["total_amount:desc,id:desc"', ',', coalesce('"' || (x3.total_amount)::text || '"', 'null'), ',', coalesce((x3.id)::text, 'null'), ']'), 'UTF8'), 'base64'), E'+/\n', '-_'), '=')
ORDER BY x3.__rn DESC) FILTER (WHERE x3.__rn <= 5))[1]), 'edges', coalesce(json_agg(json_build_object('cursor', rtrim(translate(encode(convert_to(concat('["total_amount:desc,id:desc"', ',', coalesce('"' || (x3.total_amount)::text || '"', 'null'), ',', coalesce((x3.id)::text, 'null'), ']'), 'UTF8'), 'base64'), E'+/\n', '-_'), '='), 'node', json_build_object('id', (x3.id)::text))
ORDER BY x3.__rn DESC) FILTER (WHERE x3.__rn <= 5), '[]'::json))
FROM
(SELECT t2.*, row_number() OVER (ORDER BY t2.total_amount ASC, t2.id ASC) AS __rn
FROM app.orders AS t2
WHERE t2.customer_id = t1.id AND t2.status IN (%(p0)s::VARCHAR, %(p1)s::VARCHAR) AND (t2.total_amount >= %(p2)s OR (EXISTS
(SELECT * 
FROM app.order_items AS order_items_1 
WHERE order_items_1.order_id = t2.id AND order_items_1.quantity > %(p3)s::INTEGER))) AND (t2.total_amount, t2.id) > (%(p4)s, %(p5)s::BIGINT)
ORDER BY t2.total_amount ASC, t2.id ASC
LIMIT 6) AS x3))
FROM app.customers AS t1
WHERE t1.id = %(p14)s)) AS data
