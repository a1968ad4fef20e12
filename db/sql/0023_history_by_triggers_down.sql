-- Undoes 0023_history_by_triggers.sql: the history's triggers run with the caller's
-- rights again, and the API roles hold INSERT, UPDATE and DELETE on it, as 0006 left them.

GRANT INSERT, UPDATE, DELETE ON app.order_status_history TO cdms_api, cdms_customer;

ALTER FUNCTION app.orders_log_initial_status() OWNER TO CURRENT_USER;
ALTER FUNCTION app.orders_log_status_change() OWNER TO CURRENT_USER;
ALTER FUNCTION app.orders_log_initial_status() SECURITY INVOKER RESET search_path;
ALTER FUNCTION app.orders_log_status_change() SECURITY INVOKER RESET search_path;

REVOKE INSERT ON app.order_status_history FROM cdms_owner;
REVOKE USAGE ON SCHEMA app FROM cdms_owner;

-- @lock: 0006's policies (ACCESS EXCLUSIVE)
CREATE POLICY own_insert ON app.order_status_history FOR INSERT TO cdms_customer
    WITH CHECK (EXISTS (SELECT 1 FROM app.orders AS o
                         WHERE o.id = order_id AND o.customer_id = (SELECT app.sec_customer())));
CREATE POLICY service_insert ON app.order_status_history FOR INSERT TO cdms_api
    WITH CHECK ((SELECT app.sec_role()) = 'service');
