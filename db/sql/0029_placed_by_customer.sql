-- Was an order placed by a customer principal? (docs/security.md "Limits", db/holds.py)
--
-- Two rules look at a customer's unpaid orders: an unpaid order a customer placed and
-- paid online is cancelled after CDMS_HOLD_STOCK_MINUTES (db/holds.py), and a customer's
-- unpaid orders hold at most 100 units (schema/mutations.py). Until 0029 both told a
-- customer's orders by created_by LIKE 'customer:%', which only a customer's token writes:
-- a customer's API key writes 'apikey:<id>' as the shop's own keys do, so its orders were
-- never cancelled, and the 100 units counted the orders the shop's keys placed for the
-- customer (an invoice paid by bank transfer), refusing the customer's own. The key's role
-- is in app.api_keys, which API roles may not read: this function (SECURITY DEFINER, a
-- yes or no per order) looks it up for them.

CREATE FUNCTION app.placed_by_customer(p_created_by text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, app
AS $$
    SELECT coalesce(p_created_by LIKE 'customer:%', false)
        OR (p_created_by ~ '^apikey:[0-9]{1,18}$'
            AND EXISTS (SELECT 1 FROM app.api_keys
                         WHERE id = substr(p_created_by, 8)::bigint AND role = 'customer'))
$$;
COMMENT ON FUNCTION app.placed_by_customer(text) IS
    'Whether an order''s created_by is a customer principal: its token (customer:<id>) or one '
    'of its API keys (apikey:<id> of role customer) (0029).';
REVOKE EXECUTE ON FUNCTION app.placed_by_customer(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.placed_by_customer(text) TO cdms_api, cdms_customer;
