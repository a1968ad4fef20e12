SELECT ((((((((((((((('{"' || %(p0)s::VARCHAR) || '":') || coalesce(to_json(agg.d0)::text, 'null')) || ',"') || %(p1)s::VARCHAR) || '":') || coalesce(to_json(CAST(agg.m0 AS double precision))::text, 'null')) || ',"') || %(p2)s::VARCHAR) || '":') || coalesce(to_json(CAST(agg.m1 AS bigint))::text, 'null')) || ',"') || %(p3)s::VARCHAR) || '":') || '[]') || '}' AS j 
FROM (SELECT rows_orders.d0 AS d0, percentile_cont(0.5) WITHIN GROUP (ORDER BY rows_orders.x0_0) AS m0, count(*) AS m1 
FROM (SELECT (orders.channel) AS d0, (orders.net) AS x0_0 
FROM dw.fact_orders AS orders) AS rows_orders GROUP BY rows_orders.d0) AS agg ORDER BY agg.d0 ASC NULLS LAST 
 LIMIT %(p4)s::INTEGER OFFSET %(p5)s::INTEGER
-- params: {"p0": "orders.channel", "p1": "orders.medianOrderValue", "p2": "orders.count", "p3": "@totals", "p4": 10001, "p5": 0}
