-- Undoes 0024_source_delete_by_trigger.sql: dw.capture_delete runs with the caller's rights
-- again, and the API roles hold INSERT on dw.etl_source_delete, as 0006 left them.

GRANT INSERT ON dw.etl_source_delete TO cdms_api, cdms_customer;

ALTER FUNCTION dw.capture_delete() OWNER TO CURRENT_USER;
ALTER FUNCTION dw.capture_delete() SECURITY INVOKER RESET search_path;

REVOKE INSERT ON dw.etl_source_delete FROM cdms_owner;
REVOKE USAGE ON SCHEMA dw FROM cdms_owner;
