-- How many orders and support tickets a customer principal writes in 24 hours (docs/api.md
-- "Input limits", docs/security.md).
--
-- 0028 bounded feedback at 20 a day after a complaint loop wrote 599 in ten seconds. The
-- same loop worked on the other writes a customer key may make, held back by the request
-- rate alone: 599 URGENT support tickets in ten seconds, or an order of one unit placed and
-- cancelled 300 times (600 history rows and 600 NOTIFYs), filling the support queue, the
-- warehouse's facts and the models' inputs. A customer's token or API key (cdms.role
-- 'customer') now places at most 100 orders and opens at most 20 tickets in a rolling 24
-- hours (those it wrote: app.is_customer_actor, 0029; the shop's for it do not count): CD007 (429 RATE_LIMITED) with the seconds until
-- the next is taken. One at a time per customer (a transaction-scoped advisory lock), so
-- concurrent writes cannot both pass. The shop's keys and the owner are not bound.

CREATE FUNCTION app.customer_daily_limits() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    c_window CONSTANT interval := interval '24 hours';
    v_max    integer;
    v_what   text;
    v_recent integer;
    v_oldest timestamptz;
BEGIN
    -- a customer writing for another: row-level security refuses it after this trigger
    IF app.sec_role() IS DISTINCT FROM 'customer'
       OR NEW.customer_id IS DISTINCT FROM app.sec_customer() THEN
        RETURN NEW;
    END IF;
    PERFORM pg_advisory_xact_lock(
        hashtextextended('cdms:daily:' || TG_TABLE_NAME || ':' || NEW.customer_id, 0));
    IF TG_TABLE_NAME = 'orders' THEN
        v_max := 100;
        v_what := 'orders';
        SELECT count(*) INTO v_recent FROM app.orders
         WHERE customer_id = NEW.customer_id AND ordered_at > now() - c_window
           AND app.is_customer_actor(created_by);
        IF v_recent >= v_max THEN
            SELECT ordered_at INTO v_oldest FROM app.orders
             WHERE customer_id = NEW.customer_id AND ordered_at > now() - c_window
               AND app.is_customer_actor(created_by)
             ORDER BY ordered_at DESC OFFSET v_max - 1 LIMIT 1;
        END IF;
    ELSE
        v_max := 20;
        v_what := 'support tickets';
        SELECT count(*) INTO v_recent FROM app.support_tickets
         WHERE customer_id = NEW.customer_id AND opened_at > now() - c_window
           AND app.is_customer_actor(opened_by);
        IF v_recent >= v_max THEN
            SELECT opened_at INTO v_oldest FROM app.support_tickets
             WHERE customer_id = NEW.customer_id AND opened_at > now() - c_window
               AND app.is_customer_actor(opened_by)
             ORDER BY opened_at DESC OFFSET v_max - 1 LIMIT 1;
        END IF;
    END IF;
    IF v_recent >= v_max THEN
        PERFORM app.raise_error('CD007',
            format('a customer writes at most %s %s in 24 hours; try again later', v_max, v_what),
            jsonb_build_object('field', 'customer_id', 'reason', 'daily limit', 'max', v_max,
                               'retry_after', greatest(1, ceil(extract(epoch FROM
                                   v_oldest + c_window - now())))::integer));
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION app.customer_daily_limits() IS
    'A customer principal places at most 100 orders and opens at most 20 support tickets in '
    '24 hours (0030; feedback: app.feedback_rules, 0028).';

-- @lock: from here on app tables (db/migrations/sqlfile.py: writers wait only for the rest)

CREATE TRIGGER customer_daily_limits BEFORE INSERT ON app.orders
    FOR EACH ROW EXECUTE FUNCTION app.customer_daily_limits();
CREATE TRIGGER customer_daily_limits BEFORE INSERT ON app.support_tickets
    FOR EACH ROW EXECUTE FUNCTION app.customer_daily_limits();
