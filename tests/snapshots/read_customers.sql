-- params: [["Lit(value='50%_off')", "like:254:email", null], ["Lit(value=['DE', 'FR'])", "array:text:200:country", null]]
SELECT json_build_object('customers',
(SELECT json_build_object('edges', coalesce(json_agg(json_build_object('node', json_build_object('orders',
(SELECT json_build_object('edges', coalesce(json_agg(json_build_object('node', json_build_object('items',
(SELECT coalesce(json_agg(json_build_object('product',
(SELECT json_build_object('sku', t4.sku)
FROM app.products AS t4
WHERE t4.id = t3.product_id))
ORDER BY t3.line_no ASC, t3.order_id ASC, t3.line_no ASC), '[]'::json)
FROM app.order_items AS t3
WHERE t3.order_id = x2.id)))
ORDER BY x2.__rn ASC) FILTER (WHERE x2.__rn <= 10), '[]'::json))
FROM
(SELECT t5.*, row_number() OVER (ORDER BY t5.ordered_at DESC, t5.id DESC) AS __rn
FROM app.orders AS t5
WHERE t5.customer_id = x1.id
ORDER BY t5.ordered_at DESC, t5.id DESC
LIMIT 11) AS x2)))
ORDER BY x1.__rn ASC) FILTER (WHERE x1.__rn <= 100), '[]'::json))
FROM
(SELECT t6.*, row_number() OVER (ORDER BY t6.id ASC) AS __rn
FROM app.customers AS t6
WHERE t6.email ILIKE %(p0)s::text ESCAPE '/' AND t6.country = ANY(%(p1)s::text[])
ORDER BY t6.id ASC
LIMIT 101) AS x1)) AS data
