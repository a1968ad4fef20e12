-- 0034 undone: deleting or truncating customers leaves their keys as they are again. Keys
-- 0034 revoked stay revoked (a revocation is not undone).

DROP TRIGGER revoke_keys_on_truncate ON app.customers;
DROP TRIGGER revoke_keys_on_delete ON app.customers;
DROP FUNCTION app.revoke_customer_keys();
REVOKE SELECT (customer_id, revoked_at), UPDATE (revoked_at) ON app.api_keys FROM cdms_owner;
