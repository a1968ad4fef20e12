SELECT ('{"@0":' || coalesce(to_json(to_char(agg.d0, 'YYYY-MM-DD"T"HH24:MI:SS'))::text, 'null') || ',"@1":' || coalesce(to_json(agg.d1)::text, 'null') || ',"@2":' || coalesce(to_json(agg.m0)::text, 'null') || ',"@3":' || coalesce(to_json(CAST(agg.m1 AS bigint))::text, 'null') || ',"@4":' || '[]' || '}') AS j 
FROM (SELECT rows_sales.d0 AS d0, rows_sales.d1 AS d1, sum(rows_sales.x0_0) AS m0, count(DISTINCT rows_sales.x1_0) AS m1 
FROM (SELECT date_trunc('month', timezone(%(tz)s::VARCHAR, (sales.ordered_at))) AS d0, (customers.segment) AS d1, (sales.net) AS x0_0, (sales.order_id) AS x1_0 
FROM dw.fact_sales AS sales LEFT OUTER JOIN dw.dim_customer AS customers ON sales.customer_key = customers.customer_key 
WHERE (((sales.status) NOT IN (%(p0_1)s::VARCHAR)) OR (sales.status) IS NULL) AND (sales.ordered_at) >= timezone(%(tz)s::VARCHAR, %(p1)s::TIMESTAMP WITHOUT TIME ZONE) AND (sales.ordered_at) < timezone(%(tz)s::VARCHAR, %(p2)s::TIMESTAMP WITHOUT TIME ZONE) AND (customers.country) IN (%(p3_1)s::VARCHAR, %(p3_2)s::VARCHAR)) AS rows_sales GROUP BY rows_sales.d0, rows_sales.d1) AS agg ORDER BY agg.m0 DESC NULLS LAST, agg.d0 ASC NULLS LAST, agg.d1 ASC NULLS LAST 
 LIMIT %(p4)s::INTEGER OFFSET %(p5)s::INTEGER
-- params: {"p0_1": "cancelled", "p1": "2025-01-01T00:00:00", "p2": "2026-01-01T00:00:00", "p3_1": "Germany", "p3_2": "France", "p4": 101, "p5": 0, "tz": "UTC"}
