-- Is a recorded actor a customer principal? (docs/security.md "Limits", db/holds.py)
--
-- Rules about what a customer holds and writes count what the customer did: an unpaid
-- order a customer placed and paid online is cancelled after CDMS_HOLD_STOCK_MINUTES
-- (db/holds.py), its unpaid orders hold at most 100 units (schema/mutations.py), and it
-- places and opens at most so many orders and tickets a day (0030). Until 0029 a
-- customer's orders were told by created_by LIKE 'customer:%', which only a customer's
-- token writes: a customer's API key writes 'apikey:<id>' as the shop's own keys do, so its
-- orders were never cancelled, and the 100 units counted the orders the shop's keys placed
-- for the customer (an invoice paid by bank transfer), refusing the customer's own. A key's
-- role is in app.api_keys, which API roles may not read: this function (SECURITY DEFINER,
-- a yes or no per actor) looks it up for them.

CREATE FUNCTION app.is_customer_actor(p_actor text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, app
AS $$
    SELECT coalesce(p_actor LIKE 'customer:%', false)
        OR (p_actor ~ '^apikey:[0-9]{1,18}$'
            AND EXISTS (SELECT 1 FROM app.api_keys
                         WHERE id = substr(p_actor, 8)::bigint AND role = 'customer'))
$$;
COMMENT ON FUNCTION app.is_customer_actor(text) IS
    'Whether a recorded actor (cdms.actor: an order''s created_by, a ticket''s opened_by) is a '
    'customer principal: its token (customer:<id>) or one of its API keys (apikey:<id> of role '
    'customer) (0029).';
REVOKE EXECUTE ON FUNCTION app.is_customer_actor(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.is_customer_actor(text) TO cdms_api, cdms_customer;
