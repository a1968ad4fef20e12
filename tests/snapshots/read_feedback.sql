-- params: [["Lit(value='ac')", "prefix:200:brand", null], ["Lit(value=True)", "bool", null]]
SELECT json_build_object('feedback',
(SELECT json_build_object('edges', coalesce(json_agg(json_build_object('node', json_build_object('rating', x1.rating, 'customer',
(SELECT json_build_object('id', (t2.id)::text)
FROM app.customers AS t2
WHERE t2.id = x1.customer_id)))
ORDER BY x1.__rn ASC) FILTER (WHERE x1.__rn <= 50), '[]'::json))
FROM
(SELECT t3.*, row_number() OVER (ORDER BY t3.created_at DESC, t3.id DESC) AS __rn
FROM app.feedback AS t3
WHERE NOT EXISTS
(SELECT 1
FROM app.products AS f4
WHERE f4.id = t3.product_id AND f4.brand ILIKE %(p0)s::text ESCAPE '/') AND NOT ((CASE WHEN %(p1)s::boolean THEN t3.created_at IS NULL ELSE t3.created_at IS NOT NULL END))
ORDER BY t3.created_at DESC, t3.id DESC
LIMIT 51) AS x1)) AS data
