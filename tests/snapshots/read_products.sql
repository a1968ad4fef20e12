-- params: []
SELECT json_build_object('products',
(SELECT json_build_object('aggregate',
(SELECT json_build_object('count', count(*), 'sum', json_build_object('stock', sum(t2.stock)), 'avg', json_build_object('unitPrice', round((avg(t2.unit_price))::numeric, 2)::text), 'min', json_build_object('unitPrice', (min(t2.unit_price))::text))
FROM app.products AS t2), 'edges', coalesce(json_agg(json_build_object('node', json_build_object('id', (x1.id)::text))
ORDER BY x1.__rn ASC) FILTER (WHERE x1.__rn <= 50), '[]'::json))
FROM
(SELECT t3.*, row_number() OVER (ORDER BY t3.category ASC, t3.unit_price DESC, t3.id DESC) AS __rn
FROM app.products AS t3
ORDER BY t3.category ASC, t3.unit_price DESC, t3.id DESC
LIMIT 51) AS x1)) AS data
