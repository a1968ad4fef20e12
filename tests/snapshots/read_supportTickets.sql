-- params: [["Lit(value='HIGH')", "enum", null], ["Lit(value='2025-01-01T00:00:00Z')", "datetime", null], ["Lit(value='HIGH')", "enum", null], ["Lit(value='2025-01-01T00:00:00Z')", "datetime", null]]
SELECT json_build_object('supportTickets',
(SELECT json_build_object('totalCount',
(SELECT count(*)
FROM app.support_tickets AS t2
WHERE t2.priority = %(p0)s::text AND t2.opened_at >= %(p1)s::timestamptz), 'edges', coalesce(json_agg(json_build_object('node', json_build_object('subject', x1.subject))
ORDER BY x1.__rn ASC) FILTER (WHERE x1.__rn <= 50), '[]'::json))
FROM
(SELECT t3.*, row_number() OVER (ORDER BY t3.opened_at DESC, t3.id DESC) AS __rn
FROM app.support_tickets AS t3
WHERE t3.priority = %(p2)s::text AND t3.opened_at >= %(p3)s::timestamptz
ORDER BY t3.opened_at DESC, t3.id DESC
LIMIT 51) AS x1)) AS data
