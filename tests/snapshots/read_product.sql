-- params: [["Lit(value='3')", "id", null]]
SELECT json_build_object('product',
(SELECT json_build_object('sku', t1.sku, 'unitPrice', (t1.unit_price)::text, 'feedback',
(SELECT json_build_object('edges', coalesce(json_agg(json_build_object('node', json_build_object('rating', x2.rating))
ORDER BY x2.__rn ASC) FILTER (WHERE x2.__rn <= 3), '[]'::json))
FROM
(SELECT t3.*, row_number() OVER (ORDER BY t3.created_at DESC, t3.id DESC) AS __rn
FROM app.feedback AS t3
WHERE t3.product_id = t1.id
ORDER BY t3.created_at DESC, t3.id DESC
LIMIT 4) AS x2))
FROM app.products AS t1
WHERE t1.id = %(p0)s::bigint)) AS data
