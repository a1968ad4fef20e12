-- dw.etl_source_delete is written by its trigger only (docs/security.md), as 0023 made the
-- order status history.
--
-- 0006 granted INSERT on it to both API roles, because dw.capture_delete (0004), which logs
-- the app rows a statement deleted (or an order line's moved key, or a TRUNCATE) for the
-- ETL, ran with the caller's rights. So any API role could log a row: a TRUNCATE of
-- app.customers (key_id NULL) makes the next ETL run rebuild the dimensions and drop their
-- SCD2 history. The trigger now runs as cdms_owner (SECURITY DEFINER, a fixed
-- search_path), which may insert there and nothing more; the API roles lose INSERT.
--
-- Undone by 0024_source_delete_by_trigger_down.sql.

GRANT USAGE ON SCHEMA dw TO cdms_owner;
GRANT INSERT ON dw.etl_source_delete TO cdms_owner;

-- its only names: dw.etl_source_delete, the transition tables, TG_* (pg_catalog otherwise)
ALTER FUNCTION dw.capture_delete() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- owned by cdms_owner (see 0023: a non-superuser may give a function only to a role that
-- may create in its schema, granted for the moment)
DO $$
DECLARE
    v_had boolean := has_schema_privilege('cdms_owner', 'dw', 'CREATE');
BEGIN
    IF NOT v_had THEN
        GRANT CREATE ON SCHEMA dw TO cdms_owner;
    END IF;
    ALTER FUNCTION dw.capture_delete() OWNER TO cdms_owner;
    IF NOT v_had THEN
        REVOKE CREATE ON SCHEMA dw FROM cdms_owner;
    END IF;
END
$$;

REVOKE INSERT ON dw.etl_source_delete FROM cdms_api, cdms_customer;
