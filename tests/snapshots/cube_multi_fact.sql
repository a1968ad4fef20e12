SELECT ('{"@0":' || coalesce(to_json(to_char(agg.d0, 'YYYY-MM-DD"T"HH24:MI:SS'))::text, 'null') || ',"@1":' || coalesce(to_json(agg.d1)::text, 'null') || ',"@2":' || coalesce(to_json(agg.m0)::text, 'null') || ',"@3":' || coalesce(to_json(agg.m1)::text, 'null') || ',"@4":' || coalesce(to_json((agg.m2::numeric / NULLIF(agg.m3, 0)))::text, 'null') || ',"@5":' || '[]' || '}') AS j 
FROM (SELECT facts.d0 AS d0, facts.d1 AS d1, max(facts.m0) AS m0, max(facts.m1) AS m1, max(facts.m2) AS m2, max(facts.m3) AS m3 
FROM (SELECT anon_1.d0 AS d0, anon_1.d1 AS d1, CAST(anon_1.m0 AS NUMERIC) AS m0, CAST(NULL AS NUMERIC) AS m1, CAST(NULL AS NUMERIC) AS m2, CAST(anon_1.m3 AS NUMERIC) AS m3 
FROM (SELECT rows_sales.d0 AS d0, rows_sales.d1 AS d1, sum(rows_sales.x0_0) AS m0, sum(rows_sales.x3_0) AS m3 
FROM (SELECT date_trunc('month', timezone(%(tz)s::VARCHAR, (sales.ordered_at))) AS d0, (products.category) AS d1, (sales.net) AS x0_0, (sales.quantity) AS x3_0 
FROM dw.fact_sales AS sales LEFT OUTER JOIN dw.dim_product AS products ON sales.product_key = products.product_key 
WHERE (sales.ordered_at) >= timezone(%(tz)s::VARCHAR, %(p0)s::TIMESTAMP WITHOUT TIME ZONE) AND (sales.ordered_at) < timezone(%(tz)s::VARCHAR, %(p1)s::TIMESTAMP WITHOUT TIME ZONE)) AS rows_sales GROUP BY rows_sales.d0, rows_sales.d1) AS anon_1 UNION ALL SELECT anon_2.d0 AS d0, anon_2.d1 AS d1, CAST(NULL AS NUMERIC) AS m0, CAST(anon_2.m1 AS NUMERIC) AS m1, CAST(anon_2.m2 AS NUMERIC) AS m2, CAST(NULL AS NUMERIC) AS m3 
FROM (SELECT rows_returns.d0 AS d0, rows_returns.d1 AS d1, sum(rows_returns.x1_0) AS m1, sum(rows_returns.x2_0) AS m2 
FROM (SELECT date_trunc('month', timezone(%(tz)s::VARCHAR, (returns.requested_at))) AS d0, (products.category) AS d1, (returns.refund_amount) AS x1_0, (returns.quantity) AS x2_0 
FROM dw.fact_returns AS returns LEFT OUTER JOIN dw.dim_product AS products ON returns.product_key = products.product_key 
WHERE (returns.requested_at) >= timezone(%(tz)s::VARCHAR, %(p2)s::TIMESTAMP WITHOUT TIME ZONE) AND (returns.requested_at) < timezone(%(tz)s::VARCHAR, %(p3)s::TIMESTAMP WITHOUT TIME ZONE)) AS rows_returns GROUP BY rows_returns.d0, rows_returns.d1) AS anon_2) AS facts GROUP BY facts.d0, facts.d1) AS agg ORDER BY agg.d0 ASC NULLS LAST, agg.d1 ASC NULLS LAST 
 LIMIT %(p4)s::INTEGER OFFSET %(p5)s::INTEGER
-- params: {"p0": "2025-01-01T00:00:00", "p1": "2026-01-01T00:00:00", "p2": "2025-01-01T00:00:00", "p3": "2026-01-01T00:00:00", "p4": 10001, "p5": 0, "tz": "UTC"}
