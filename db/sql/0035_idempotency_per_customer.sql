-- 0035: a customer's idempotency keys are the customer's, whichever credential sends them.
--
-- 0009 scoped placeOrder's idempotency keys by principal (cdms.actor): a customer token is
-- `customer:<id>`, each of its API keys `apikey:<id>`. So a retry of the same order with
-- the same key through another credential of the same customer (a mobile app whose key was
-- rotated between the try and the retry, a web session's token against the app's key)
-- placed a second order. Stripe scopes idempotency keys by account, not by API key; the
-- account here is the customer. Staff principals keep theirs (an admin placing an order for
-- a customer is not the customer retrying).
--
-- app.idempotency_scope(): `customer:<id>` for a customer principal (app.sec_customer()),
-- else the actor. The column keeps its name (`principal`), now the scope. The policy
-- own_keys lets a session use its scope's keys and, for a rolling upgrade, its actor's
-- (the previous version, still serving beside this one, writes and reads those): both
-- are the session's own. Keys a customer's API keys hold now (kept 24 hours) move
-- to their customer's scope, the first of each (customer, key) where two keys of one
-- customer used the same one; the others stay under the key's actor until pruned.
--
-- Undone by 0035_idempotency_per_customer_down.sql.

CREATE FUNCTION app.idempotency_scope() RETURNS text
LANGUAGE sql STABLE
AS $$ SELECT coalesce('customer:' || app.sec_customer(), app.current_actor()) $$;
COMMENT ON FUNCTION app.idempotency_scope() IS
    'Whose placeOrder idempotency keys a session uses: customer:<id> for a customer '
    'principal (its token and every API key of it), else cdms.actor (0035).';
REVOKE EXECUTE ON FUNCTION app.idempotency_scope() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.idempotency_scope() TO cdms_api, cdms_customer;

-- @lock
DROP POLICY own_keys ON app.idempotency_keys;
CREATE POLICY own_keys ON app.idempotency_keys TO cdms_api, cdms_customer
    USING (principal IN ((SELECT app.idempotency_scope()), (SELECT app.current_actor())))
    WITH CHECK (principal IN ((SELECT app.idempotency_scope()), (SELECT app.current_actor())));
COMMENT ON COLUMN app.idempotency_keys.principal IS
    'Whose key: customer:<id> for a customer principal, else the actor (app.idempotency_scope, 0035).';
COMMENT ON TABLE app.idempotency_keys IS
    'placeOrder idempotency keys per customer (or staff actor), kept 24 hours.';

WITH moved AS (
    SELECT DISTINCT ON (k.customer_id, i.key)
           i.principal, i.key, 'customer:' || k.customer_id AS scope
    FROM app.idempotency_keys AS i
    JOIN app.api_keys AS k ON i.principal = 'apikey:' || k.id
    WHERE k.role = 'customer' AND k.customer_id IS NOT NULL
    ORDER BY k.customer_id, i.key, i.created_at
)
UPDATE app.idempotency_keys AS t SET principal = m.scope
FROM moved AS m
WHERE t.principal = m.principal AND t.key = m.key
  AND NOT EXISTS (SELECT 1 FROM app.idempotency_keys AS x
                  WHERE x.principal = m.scope AND x.key = m.key);
