-- 0029 undone.

DROP FUNCTION app.is_customer_actor(text);
