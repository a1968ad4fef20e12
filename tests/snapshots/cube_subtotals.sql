SELECT ('{"@0":' || coalesce(to_json(agg.d0)::text, 'null') || ',"@1":' || coalesce(to_json(agg.d1)::text, 'null') || ',"@2":' || coalesce(to_json(agg.m0)::text, 'null') || ',"@3":' || coalesce(to_json(CAST(agg.m1 AS bigint))::text, 'null') || ',"@4":' || to_json(array_remove(ARRAY[CASE WHEN (agg.g & 2) <> 0 THEN 'products.category' END, CASE WHEN (agg.g & 1) <> 0 THEN 'sales.channel' END]::text[], NULL))::text || '}') AS j 
FROM (SELECT rows_sales.d0 AS d0, rows_sales.d1 AS d1, grouping(rows_sales.d0, rows_sales.d1) AS g, sum(rows_sales.x0_0) AS m0, count(DISTINCT rows_sales.x1_0) AS m1 
FROM (SELECT (products.category) AS d0, (sales.channel) AS d1, (sales.net) AS x0_0, (sales.customer_id) AS x1_0 
FROM dw.fact_sales AS sales LEFT OUTER JOIN dw.dim_product AS products ON sales.product_key = products.product_key) AS rows_sales GROUP BY ROLLUP(rows_sales.d0, rows_sales.d1)) AS agg ORDER BY ((agg.g & 2) <> 0) ASC, agg.d0 ASC NULLS LAST, ((agg.g & 1) <> 0) ASC, agg.d1 ASC NULLS LAST 
 LIMIT %(p0)s::INTEGER OFFSET %(p1)s::INTEGER
-- params: {"p0": 10001, "p1": 0}
