-- params: {}
SELECT json_build_object('customers',
(SELECT json_build_object('edges', coalesce(json_agg(json_build_object('node', json_build_object('orders',
(SELECT json_build_object('edges', coalesce(json_agg(json_build_object('node', json_build_object('items',
(SELECT coalesce(json_agg(json_build_object('product',
(SELECT json_build_object('sku', t6.sku)
FROM app.products AS t6
WHERE t6.id = t5.product_id))
ORDER BY t5.line_no ASC, t5.order_id ASC), '[]'::json)
FROM app.order_items AS t5
WHERE t5.order_id = x4.id)))
ORDER BY x4.__rn ASC) FILTER (WHERE x4.__rn <= 10), '[]'::json))
FROM
(SELECT t3.*, row_number() OVER (ORDER BY t3.ordered_at DESC, t3.id DESC) AS __rn
FROM app.orders AS t3
WHERE t3.customer_id = x2.id
ORDER BY t3.ordered_at DESC, t3.id DESC
LIMIT 11) AS x4)))
ORDER BY x2.__rn ASC) FILTER (WHERE x2.__rn <= 100), '[]'::json))
FROM
(SELECT t1.*, row_number() OVER (ORDER BY t1.id ASC) AS __rn
FROM app.customers AS t1
ORDER BY t1.id ASC
LIMIT 101) AS x2)) AS data
