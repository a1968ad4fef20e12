SELECT ((((((((((((((((((('{"' || %(p1)s::VARCHAR) || '":') || coalesce(to_json(to_char(agg.d0, 'YYYY-MM-DD"T"HH24:MI:SS'))::text, 'null')) || ',"') || %(p2)s::VARCHAR) || '":') || coalesce(to_json(agg.d1)::text, 'null')) || ',"') || %(p3)s::VARCHAR) || '":') || coalesce(to_json(CAST(agg.m0 AS double precision))::text, 'null')) || ',"') || %(p4)s::VARCHAR) || '":') || coalesce(to_json(CAST((agg.m1 / NULLIF(agg.m0, 0)) AS double precision))::text, 'null')) || ',"') || %(p5)s::VARCHAR) || '":') || '[]') || '}' AS j 
FROM (SELECT rows_sales.d0 AS d0, rows_sales.d1 AS d1, sum(rows_sales.x0_0) AS m0, sum(rows_sales.x1_0) AS m1 
FROM (SELECT date_trunc('quarter', sales.bucket) AS d0, sales."products_category" AS d1, sales."m_revenue" AS x0_0, sales."m_margin" AS x1_0 
FROM dw_rollup.sales_monthly_by_category AS sales 
WHERE sales."sales_channel" IN (%(p0_1)s::VARCHAR, %(p0_2)s::VARCHAR)) AS rows_sales GROUP BY rows_sales.d0, rows_sales.d1) AS agg ORDER BY agg.d0 ASC NULLS LAST, agg.d1 ASC NULLS LAST 
 LIMIT %(p6)s::INTEGER OFFSET %(p7)s::INTEGER
-- params: {"p0_1": "web", "p0_2": "mobile", "p1": "sales.orderedAt.quarter", "p2": "products.category", "p3": "sales.revenue", "p4": "sales.marginRate", "p5": "@totals", "p6": 10001, "p7": 0}
