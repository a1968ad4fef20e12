SELECT ((((((((((('{"' || %(p2)s::VARCHAR) || '":') || coalesce(to_json(agg.d0)::text, 'null')) || ',"') || %(p3)s::VARCHAR) || '":') || coalesce(to_json(CAST((agg.m0::numeric / NULLIF(agg.m1, 0)) AS double precision))::text, 'null')) || ',"') || %(p4)s::VARCHAR) || '":') || '[]') || '}' AS j 
FROM (SELECT rows_support.d0 AS d0, count(rows_support.x0_0) AS m0, count(*) AS m1 
FROM (SELECT (support.priority) AS d0, (CASE WHEN support.is_resolved THEN 1 END) AS x0_0 
FROM dw.fact_support AS support LEFT OUTER JOIN dw.dim_customer AS customers ON support.customer_key = customers.customer_key 
WHERE (strpos(lower((support.category)), lower(%(p0)s::VARCHAR)) > %(strpos_1)s::INTEGER OR (customers.segment) = %(p1)s::VARCHAR) AND (customers.is_current)) AS rows_support GROUP BY rows_support.d0) AS agg 
WHERE agg.m1 >= %(p5)s ORDER BY agg.d0 ASC NULLS LAST 
 LIMIT %(p6)s::INTEGER OFFSET %(p7)s::INTEGER
-- params: {"p0": "bill", "p1": "corporate", "p2": "support.priority", "p3": "support.resolutionRate", "p4": "@totals", "p5": 2.0, "p6": 10001, "p7": 0, "strpos_1": 0}
