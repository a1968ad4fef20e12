-- 0030 undone: customers' orders and tickets are bounded by the request rate alone.

-- @lock: from here on app tables (db/migrations/sqlfile.py)

DROP TRIGGER customer_daily_limits ON app.orders;
DROP TRIGGER customer_daily_limits ON app.support_tickets;
DROP FUNCTION app.customer_daily_limits();
