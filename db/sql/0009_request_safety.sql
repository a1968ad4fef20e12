-- What a hostile caller must not be able to do in SQL either (contract: docs/security.md):
--   1. prices and discounts are the shop's: below service, an order line carries the
--      product's current price and no discount (for every writer, not only place_order)
--   2. idempotency keys of placeOrder: a retry with the same key returns the first order
--   3. rate-limit buckets shared by every API process and host

-- =======================================================================================
-- 1. order lines below service: the current price, no discount
-- =======================================================================================
-- place_order copies prices and takes the basket's discount; admin and service principals
-- (and the owner: seed, ETL, tools) may discount, within place_order's rules (at most 2
-- decimals, never negative, never more than the line's quantity x price). A customer
-- principal may not discount at all, and a line it writes directly must carry the price.
CREATE FUNCTION app.sec_guard_line_price() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    v_role  text := app.sec_role();
    v_price numeric;
BEGIN
    IF v_role IS NULL OR v_role IN ('admin', 'service') THEN
        RETURN NEW;
    END IF;
    IF NEW.discount IS DISTINCT FROM 0 THEN
        PERFORM app.raise_error('CD006',
            format('role %s may not set a discount (line %s)', v_role, NEW.line_no),
            jsonb_build_object('reason', 'discount_not_allowed', 'role', v_role,
                               'field', 'discount'));
    END IF;
    SELECT unit_price INTO v_price FROM app.products WHERE id = NEW.product_id;
    IF NEW.unit_price IS DISTINCT FROM v_price THEN
        PERFORM app.raise_error('CD006',
            format('role %s may not set a price (line %s)', v_role, NEW.line_no),
            jsonb_build_object('reason', 'price_not_allowed', 'role', v_role,
                               'field', 'unit_price'));
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER sec_guard_line_price BEFORE INSERT OR UPDATE ON app.order_items
    FOR EACH ROW EXECUTE FUNCTION app.sec_guard_line_price();

-- =======================================================================================
-- 2. idempotency keys (placeOrder)
-- =======================================================================================
-- One row per (principal, key), written in the transaction that places the order: a
-- concurrent retry waits on the primary key until the first commits, then finds it.
-- request_sha256 is the hash of the basket: the same key with another basket is a
-- CONFLICT. Kept 24 hours (app.prune_idempotency_keys, called by the API hourly).
CREATE TABLE app.idempotency_keys (
    principal       text        NOT NULL,
    key             text        NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    request_sha256  text        NOT NULL CHECK (request_sha256 ~ '^[0-9a-f]{64}$'),
    order_id        bigint      REFERENCES app.orders (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_keys_created_at ON app.idempotency_keys (created_at);
COMMENT ON TABLE app.idempotency_keys IS
    'placeOrder idempotency keys per principal (cdms.actor), kept 24 hours.';

ALTER TABLE app.idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.idempotency_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY owner_all ON app.idempotency_keys TO cdms_owner USING (true) WITH CHECK (true);
-- each principal sees and writes its own keys only
CREATE POLICY own_keys ON app.idempotency_keys TO cdms_api, cdms_customer
    USING (principal = (SELECT app.current_actor()))
    WITH CHECK (principal = (SELECT app.current_actor()));
GRANT SELECT, INSERT, UPDATE ON app.idempotency_keys TO cdms_api, cdms_customer;

CREATE FUNCTION app.prune_idempotency_keys(p_keep interval DEFAULT interval '24 hours')
RETURNS bigint
LANGUAGE sql
AS $$
    WITH gone AS (DELETE FROM app.idempotency_keys WHERE created_at < now() - p_keep
                  RETURNING 1)
    SELECT count(*) FROM gone
$$;

-- =======================================================================================
-- 3. rate-limit buckets (token buckets, one per principal or client address)
-- =======================================================================================
-- UNLOGGED: nothing to recover after a crash (a bucket restarts full). Used by the owner
-- connection of every API process, never by the API roles.
CREATE UNLOGGED TABLE app.rate_buckets (
    bucket      text             PRIMARY KEY,
    tokens      double precision NOT NULL,
    refilled_at timestamptz      NOT NULL
);
ALTER TABLE app.rate_buckets ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.rate_buckets FORCE ROW LEVEL SECURITY;
CREATE POLICY owner_all ON app.rate_buckets TO cdms_owner USING (true) WITH CHECK (true);
COMMENT ON TABLE app.rate_buckets IS
    'Token buckets of the API rate limit, shared by every process (app.take_tokens).';

-- Take p_n tokens from the bucket (created full): 0 when they were taken, else the
-- seconds until they would be (nothing taken). The row lock serialises one principal's
-- requests across every process.
CREATE FUNCTION app.take_tokens(p_bucket text, p_rate double precision,
                                p_burst double precision, p_n integer DEFAULT 1)
RETURNS double precision
LANGUAGE plpgsql
AS $$
DECLARE
    v_now    timestamptz := clock_timestamp();
    v_tokens double precision;
BEGIN
    INSERT INTO app.rate_buckets AS b (bucket, tokens, refilled_at)
    VALUES (p_bucket, p_burst, v_now)
    ON CONFLICT (bucket) DO UPDATE
        SET tokens = least(p_burst, b.tokens
                       + greatest(0, extract(epoch FROM v_now - b.refilled_at)) * p_rate),
            refilled_at = v_now
    RETURNING tokens INTO v_tokens;
    IF v_tokens >= p_n THEN
        UPDATE app.rate_buckets SET tokens = v_tokens - p_n WHERE bucket = p_bucket;
        RETURN 0;
    END IF;
    RETURN (p_n - v_tokens) / p_rate;
END
$$;

-- Forget buckets idle long enough to be full again.
CREATE FUNCTION app.prune_rate_buckets(p_idle interval DEFAULT interval '1 hour')
RETURNS bigint
LANGUAGE sql
AS $$
    WITH gone AS (DELETE FROM app.rate_buckets WHERE refilled_at < now() - p_idle RETURNING 1)
    SELECT count(*) FROM gone
$$;
