-- The rules of feedback: what a review or a complaint may name, and how many a customer
-- gives (docs/api.md "Input limits", docs/security.md).
--
-- Feedback is the shop's evidence about its products: the cube's averageRating and
-- complaintCount, the dashboard, the product summary and the models read it. Until 0028 a
-- customer key could review a product it never bought, review its own pending order, name a
-- product that was not in the order it named, and write 599 complaints of 10,000 characters
-- about one product in ten seconds (the product's averageRating fell to 1.02; each write
-- woke the warehouse pipeline). What the big shops do, and cdms now:
--
--   every writer      a product named together with an order is one of that order's
--                     (the order is the customer's own: check_order_customer, 0003)
--   API principals    a review rates a product (product_id required); at most one review
--   (cdms.role set)   per customer and product: a second is CD005 with the first one's id
--                     (Amazon and Shopify review apps keep one review per customer and
--                     product and let it be edited; they do not add a second)
--   customers         a review needs a verified purchase: the product in one of the
--                     customer's orders that was delivered (or delivered, then returned),
--                     the order named if one is; a complaint naming a product needs it in
--                     one of the customer's orders (any status: "it never came" is a
--                     complaint); at most 20 feedback a rolling 24 hours (CD007)
--   admin             not bound by the verified purchase nor by the daily limit: staff
--                     write down what a customer said by phone or import reviews
--   the owner         (no cdms.role: migrations, the seed, bulk loads, the CLI) writes rows
--                     as they are, like stock (0003): the seeded history has reviews of a
--                     product bought twice, and rows written before 0028 stay as they were
--
-- A customer's feedback is written one at a time (a transaction-scoped advisory lock on
-- the customer), so two concurrent writes cannot both pass the "one review" or the daily
-- count. Nothing is checked retroactively: no row is changed, no constraint validated.

CREATE FUNCTION app.feedback_rules() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    c_daily    CONSTANT integer := 20;  -- feedback a customer gives in 24 hours
    v_role     text := app.sec_role();
    v_status   text;
    v_existing bigint;
    v_recent   integer;
    v_oldest   timestamptz;
BEGIN
    -- a customer writing for another: row-level security refuses it (FORBIDDEN) after this
    -- trigger; telling anything here about the other's orders would leak them
    IF v_role = 'customer' AND NEW.customer_id IS DISTINCT FROM app.sec_customer() THEN
        RETURN NEW;
    END IF;
    -- every writer: the product of a feedback about an order is one of the order's
    IF NEW.order_id IS NOT NULL AND NEW.product_id IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM app.order_items
                        WHERE order_id = NEW.order_id AND product_id = NEW.product_id) THEN
        PERFORM app.raise_error('CD004',
            format('product %s is not in order %s', NEW.product_id, NEW.order_id),
            jsonb_build_object('field', 'product_id', 'reason', 'not in the order',
                               'product_id', NEW.product_id, 'order_id', NEW.order_id));
    END IF;
    IF v_role IS NULL THEN  -- the owner: the seed, bulk loads
        RETURN NEW;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('cdms:feedback:' || NEW.customer_id, 0));

    IF NEW.kind = 'review' THEN
        IF NEW.product_id IS NULL THEN
            PERFORM app.raise_error('CD004', 'a review rates a product: give productId',
                jsonb_build_object('field', 'product_id', 'reason', 'required for a review'));
        END IF;
        IF v_role = 'customer' THEN
            IF NEW.order_id IS NOT NULL THEN
                SELECT status INTO v_status FROM app.orders WHERE id = NEW.order_id;
                IF v_status NOT IN ('delivered', 'returned') THEN
                    PERFORM app.raise_error('CD004',
                        format('order %s is %s: a review needs the order delivered',
                               NEW.order_id, v_status),
                        jsonb_build_object('field', 'order_id', 'reason', 'not delivered',
                                           'order_id', NEW.order_id, 'status', v_status));
                END IF;
            ELSIF NOT EXISTS (
                    SELECT 1 FROM app.orders AS o
                      JOIN app.order_items AS i ON i.order_id = o.id
                     WHERE o.customer_id = NEW.customer_id AND i.product_id = NEW.product_id
                       AND o.status IN ('delivered', 'returned')) THEN
                PERFORM app.raise_error('CD004',
                    format('product %s was not delivered to customer %s: a review needs a'
                           ' verified purchase', NEW.product_id, NEW.customer_id),
                    jsonb_build_object('field', 'product_id', 'reason', 'not a verified purchase',
                                       'product_id', NEW.product_id));
            END IF;
        END IF;
        SELECT id INTO v_existing FROM app.feedback
         WHERE customer_id = NEW.customer_id AND product_id = NEW.product_id
           AND kind = 'review' AND id IS DISTINCT FROM NEW.id
         ORDER BY id LIMIT 1;
        IF FOUND THEN
            PERFORM app.raise_error('CD005',
                format('customer %s already reviewed product %s (feedback %s)',
                       NEW.customer_id, NEW.product_id, v_existing),
                jsonb_build_object('field', 'product_id', 'reason', 'already reviewed',
                                   'id', v_existing, 'product_id', NEW.product_id));
        END IF;
    ELSIF v_role = 'customer' AND NEW.product_id IS NOT NULL AND NEW.order_id IS NULL
          AND NOT EXISTS (
                SELECT 1 FROM app.orders AS o
                  JOIN app.order_items AS i ON i.order_id = o.id
                 WHERE o.customer_id = NEW.customer_id AND i.product_id = NEW.product_id) THEN
        PERFORM app.raise_error('CD004',
            format('product %s was never ordered by customer %s', NEW.product_id,
                   NEW.customer_id),
            jsonb_build_object('field', 'product_id', 'reason', 'not ordered by the customer',
                               'product_id', NEW.product_id));
    END IF;

    -- last, so that a refused write tells what is wrong with it first (and does not count)
    IF TG_OP = 'INSERT' AND v_role = 'customer' THEN
        SELECT count(*) INTO v_recent FROM app.feedback
         WHERE customer_id = NEW.customer_id AND created_at > now() - interval '24 hours';
        IF v_recent >= c_daily THEN
            -- the next one is taken when the c_daily-th newest leaves the window
            SELECT created_at INTO v_oldest FROM app.feedback
             WHERE customer_id = NEW.customer_id AND created_at > now() - interval '24 hours'
             ORDER BY created_at DESC OFFSET c_daily - 1 LIMIT 1;
            PERFORM app.raise_error('CD007',
                format('a customer gives at most %s feedback in 24 hours; try again later',
                       c_daily),
                jsonb_build_object('field', 'customer_id', 'reason', 'daily limit',
                                   'max', c_daily,
                                   'retry_after', greatest(1, ceil(extract(epoch FROM
                                       v_oldest + interval '24 hours' - now())))::integer));
        END IF;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION app.feedback_rules() IS
    'What a feedback may name and how many a customer gives (0028): product in the named '
    'order; for API principals a review names a product, one per customer and product; for '
    'customers a review needs a delivered purchase, a complaint a product it ordered, and at '
    'most 20 feedback in 24 hours.';

-- @lock: from here on app tables (db/migrations/sqlfile.py: writers wait only for the rest)

-- after check_order_customer (triggers fire in name order): an unknown or foreign order is
-- told as such first
CREATE TRIGGER feedback_rules BEFORE INSERT OR UPDATE OF customer_id, order_id, product_id, kind
    ON app.feedback
    FOR EACH ROW EXECUTE FUNCTION app.feedback_rules();
