-- 0034: a customer's API keys end with the customer (probe 9, finding L3).
--
-- app.api_keys.customer_id has no foreign key, on purpose (0006: a reseed must not wipe
-- the shop's own keys). So a key of a deleted customer kept authenticating (200,
-- `customer: null`, subscriptions acknowledged), and once its id was given again (an
-- insert with an explicit id, `cdms seed --reset`, whose TRUNCATE ... RESTART IDENTITY
-- starts the ids at 1 again) it acted as the new customer.
--
-- Now deleting customers revokes their keys (revoked_at = now(): the row, its name, its
-- last use and its end are kept for the audit, as `cdms apikey revoke` keeps them), and
-- emptying app.customers (TRUNCATE, a reseed) revokes every customer key. The shop's own
-- keys (admin, analyst, service) are untouched. A key whose customer went before 0034 (an
-- orphan) is revoked here too: refused at look-up either way (api/apikeys.py), it would
-- have come back to life as the customer given its id again. The downgrade leaves them
-- revoked (it cannot tell which keys 0034 revoked; a revoked orphan stays harmless).
--
-- The trigger function runs as cdms_owner (SECURITY DEFINER, a fixed search_path), as
-- 0023's do: an admin principal deleting a customer has no privilege on app.api_keys.
-- cdms_owner may read the two columns it names and set revoked_at, nothing more (USAGE on
-- schema app is 0023's; the owner_all policy lets it through row-level security).
--
-- Undone by 0034_customer_keys_revoked_down.sql.

-- every name schema-qualified but the transition table `gone`
CREATE FUNCTION app.revoke_customer_keys() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN  -- every customer is gone
        UPDATE app.api_keys SET revoked_at = now()
         WHERE customer_id IS NOT NULL AND revoked_at IS NULL;
    ELSE
        UPDATE app.api_keys SET revoked_at = now()
         WHERE customer_id IN (SELECT id FROM gone) AND revoked_at IS NULL;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION app.revoke_customer_keys() IS
    'Revokes the API keys of the customers a statement deleted, or of every customer when '
    'app.customers is truncated (0034).';

GRANT SELECT (customer_id, revoked_at), UPDATE (revoked_at) ON app.api_keys TO cdms_owner;

-- owned by cdms_owner, not by the migrating role (see 0023: a non-superuser may give a
-- function to a role only if that role may create in the schema, granted for the moment)
DO $$
DECLARE
    v_had boolean := has_schema_privilege('cdms_owner', 'app', 'CREATE');
BEGIN
    IF NOT v_had THEN
        GRANT CREATE ON SCHEMA app TO cdms_owner;
    END IF;
    ALTER FUNCTION app.revoke_customer_keys() OWNER TO cdms_owner;
    IF NOT v_had THEN
        REVOKE CREATE ON SCHEMA app FROM cdms_owner;
    END IF;
END
$$;

-- @lock: CREATE TRIGGER on app.customers (SHARE ROW EXCLUSIVE, catalogue only)
-- one statement-level trigger per event: a transition table allows only one
CREATE TRIGGER revoke_keys_on_delete AFTER DELETE ON app.customers
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION app.revoke_customer_keys();
CREATE TRIGGER revoke_keys_on_truncate AFTER TRUNCATE ON app.customers
    FOR EACH STATEMENT EXECUTE FUNCTION app.revoke_customer_keys();

-- the orphans of deletes before 0034 (after the triggers: a delete meanwhile is theirs)
UPDATE app.api_keys k SET revoked_at = now()
 WHERE k.customer_id IS NOT NULL AND k.revoked_at IS NULL
   AND NOT EXISTS (SELECT 1 FROM app.customers c WHERE c.id = k.customer_id);
