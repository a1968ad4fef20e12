-- The order status history is written by the shop's triggers only (docs/security.md).
--
-- 0006 granted INSERT, UPDATE and DELETE on app.order_status_history to both API roles, as
-- on every app table, and its policies let a customer insert rows for its own orders
-- (own_insert) and the service role for any (service_insert): a customer could log its
-- order "delivered" that was never shipped, an admin rewrite or erase the audit. The rows
-- come from two triggers on app.orders, which ran with the caller's rights and so needed
-- those grants. They now run as cdms_owner (SECURITY DEFINER, a fixed search_path), which
-- may insert there and nothing more, and the API roles keep SELECT only.
--
-- Undone by 0023_history_by_triggers_down.sql.

-- what the triggers need as cdms_owner: the schema and INSERT on the history (the
-- functions they call are PUBLIC; the order's foreign key is checked as the table's owner)
GRANT USAGE ON SCHEMA app TO cdms_owner;
GRANT INSERT ON app.order_status_history TO cdms_owner;

-- every name in them is schema-qualified (app.*, pg_catalog's functions): nothing a
-- caller puts first on its search_path can stand in for one
ALTER FUNCTION app.orders_log_initial_status()
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION app.orders_log_status_change()
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- owned by cdms_owner (not by the migrating role, a superuser in development): the
-- functions then have its rights only. A non-superuser may give a function to a role only
-- if that role may create in the schema: granted for the moment if it may not already.
DO $$
DECLARE
    v_had boolean := has_schema_privilege('cdms_owner', 'app', 'CREATE');
BEGIN
    IF NOT v_had THEN
        GRANT CREATE ON SCHEMA app TO cdms_owner;
    END IF;
    ALTER FUNCTION app.orders_log_initial_status() OWNER TO cdms_owner;
    ALTER FUNCTION app.orders_log_status_change() OWNER TO cdms_owner;
    IF NOT v_had THEN
        REVOKE CREATE ON SCHEMA app FROM cdms_owner;
    END IF;
END
$$;

REVOKE INSERT, UPDATE, DELETE ON app.order_status_history FROM cdms_api, cdms_customer;

-- @lock: the policies that let the API roles insert are moot now (ACCESS EXCLUSIVE)
DROP POLICY own_insert ON app.order_status_history;
DROP POLICY service_insert ON app.order_status_history;
