-- 0029 undone.

DROP FUNCTION app.placed_by_customer(text);
