SELECT agg.d0, agg.d1, agg.g, agg.m0 AS f0, agg.m1 AS f1 
FROM (SELECT rows_sales.d0 AS d0, rows_sales.d1 AS d1, grouping(rows_sales.d0, rows_sales.d1) AS g, sum(rows_sales.x0_0) AS m0, count(DISTINCT rows_sales.x1_0) AS m1 
FROM (SELECT (products.category) AS d0, (sales.channel) AS d1, (sales.net) AS x0_0, (sales.customer_id) AS x1_0 
FROM dw.fact_sales AS sales LEFT OUTER JOIN dw.dim_product AS products ON sales.product_key = products.product_key) AS rows_sales GROUP BY ROLLUP(rows_sales.d0, rows_sales.d1)) AS agg ORDER BY agg.d0 ASC NULLS LAST, agg.d1 ASC NULLS LAST 
 LIMIT %(p0)s::INTEGER OFFSET %(p1)s::INTEGER
-- params: {"p0": 10000, "p1": 0}
