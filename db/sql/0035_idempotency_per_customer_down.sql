-- 0035 undone: idempotency keys belong to each credential (cdms.actor) again. Keys moved to
-- a customer's scope stay there (under `customer:<id>`, a customer token's own actor) until
-- pruned: a retry through the customer's API key no longer finds them.

DROP POLICY own_keys ON app.idempotency_keys;
CREATE POLICY own_keys ON app.idempotency_keys TO cdms_api, cdms_customer
    USING (principal = (SELECT app.current_actor()))
    WITH CHECK (principal = (SELECT app.current_actor()));
COMMENT ON COLUMN app.idempotency_keys.principal IS NULL;
COMMENT ON TABLE app.idempotency_keys IS
    'placeOrder idempotency keys per principal (cdms.actor), kept 24 hours.';
DROP FUNCTION app.idempotency_scope();
