SELECT ('{"@0":' || coalesce(to_json(to_char(agg.d0, 'YYYY-MM-DD"T"HH24:MI:SS'))::text, 'null') || ',"@1":' || coalesce(to_json(agg.d1)::text, 'null') || ',"@2":' || coalesce(to_json(agg.m0)::text, 'null') || ',"@3":' || coalesce(to_json((agg.m1 / NULLIF(agg.m0, 0)))::text, 'null') || ',"@4":' || '[]' || '}') AS j 
FROM (SELECT rows_sales.d0 AS d0, rows_sales.d1 AS d1, sum(rows_sales.x0_0) AS m0, sum(rows_sales.x1_0) AS m1 
FROM (SELECT date_trunc('quarter', sales.bucket) AS d0, sales."products_category" AS d1, sales."m_revenue" AS x0_0, sales."m_margin" AS x1_0 
FROM dw_rollup.sales_monthly_by_category AS sales 
WHERE sales."sales_channel" IN (%(p0_1)s::VARCHAR, %(p0_2)s::VARCHAR)) AS rows_sales GROUP BY rows_sales.d0, rows_sales.d1) AS agg ORDER BY agg.d0 ASC NULLS LAST, agg.d1 ASC NULLS LAST 
 LIMIT %(p1)s::INTEGER OFFSET %(p2)s::INTEGER
-- params: {"p0_1": "web", "p0_2": "mobile", "p1": 10001, "p2": 0}
