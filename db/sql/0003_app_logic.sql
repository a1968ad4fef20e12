-- Business rules of the operational model that must hold for every writer: triggers,
-- procedures and views of schema app (contract: docs/architecture.md).
--
-- Layout of this file
--   1. helpers          current actor, raising CD errors, reading numbers from jsonb
--   2. updated_at       one BEFORE UPDATE trigger per table
--   3. order totals     statement-level triggers on order_items (transition tables)
--   4. status rules     allowed transitions, guards, history, NOTIFY (orders, returns, tickets)
--   5. ownership        an order referenced by feedback / a ticket / a return belongs to its customer
--   6. procedures       place_order, set_order_status, returns, tickets
--   7. views            customer_summary, product_performance
--
-- Who does what
--   * Triggers hold the rules (legal transitions, status timestamps, history, NOTIFY,
--     totals, ownership, never returning more than was bought), so a plain UPDATE obeys
--     them as well as a procedure does.
--   * Procedures add validation with precise errors and the stock movements: place_order
--     takes stock, cancelling an order and approving a return give it back. Rows written
--     straight into the tables (bulk loads, the seed) do not move stock.
--
-- Errors are SQLSTATEs of class CD with a JSON DETAIL (see app.raise_error):
--   CD001 out of stock, CD002 invalid transition, CD003 not found, CD004 bad input,
--   CD005 conflict, CD006 forbidden.

-- =======================================================================================
-- 1. helpers
-- =======================================================================================

-- Who is writing: the transaction's cdms.actor setting, NULL when unset. (A setting that
-- was SET LOCAL in an earlier transaction reads back as '' afterwards, hence nullif.)
CREATE FUNCTION app.current_actor() RETURNS text
LANGUAGE sql STABLE
AS $$ SELECT nullif(current_setting('cdms.actor', true), '') $$;

-- Raise one of our CD errors: the message for people, the detail (JSON) for programs.
CREATE FUNCTION app.raise_error(p_sqlstate text, p_message text, p_detail jsonb)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = p_sqlstate, MESSAGE = p_message, DETAIL = p_detail::text;
END
$$;

-- Turn a CHECK / NOT NULL violation on an insert by a procedure into a CD004 naming the
-- field. Our CHECK constraints on one column are named <table>_<column>_check.
CREATE FUNCTION app.raise_bad_column(p_table text, p_constraint text, p_column text, p_values jsonb)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    v_field text := coalesce(
        nullif(p_column, ''),
        regexp_replace(p_constraint, '^' || p_table || '_(.*)_check$', '\1'));
BEGIN
    PERFORM app.raise_error('CD004',
        format('invalid %s: %s', v_field, coalesce(p_values ->> v_field, 'null')),
        jsonb_build_object('field', v_field, 'reason', 'invalid value',
                           'value', p_values -> v_field));
END
$$;

-- A JSON number, or a string holding a decimal number, as numeric; NULL for anything else.
-- (The contract sends discounts as strings, "0.00", so that no float ever touches money.)
CREATE FUNCTION app.jsonb_to_numeric(p_value jsonb) RETURNS numeric
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE
        WHEN jsonb_typeof(p_value) = 'number' THEN (p_value #>> '{}')::numeric
        WHEN jsonb_typeof(p_value) = 'string'
             AND (p_value #>> '{}') ~ '^\s*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)\s*$'
            THEN (p_value #>> '{}')::numeric
    END
$$;

-- =======================================================================================
-- 2. updated_at = now() on every update of every table (the ETL's watermark)
-- =======================================================================================

CREATE FUNCTION app.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- (app.order_status_history is append-only and has no updated_at.)
CREATE TRIGGER touch_updated_at BEFORE UPDATE ON app.customers
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER touch_updated_at BEFORE UPDATE ON app.products
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER touch_updated_at BEFORE UPDATE ON app.orders
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER touch_updated_at BEFORE UPDATE ON app.order_items
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER touch_updated_at BEFORE UPDATE ON app.feedback
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER touch_updated_at BEFORE UPDATE ON app.returns
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER touch_updated_at BEFORE UPDATE ON app.support_tickets
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();

-- =======================================================================================
-- 3. order totals, maintained from app.order_items
-- =======================================================================================

-- Recompute item_count, subtotal, discount_total and total_amount of the given orders from
-- their lines. Callable directly too (e.g. to repair after a bulk load with triggers off).
CREATE FUNCTION app.recompute_order_totals(p_order_ids bigint[]) RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    -- Lock the orders first, in id order: two transactions adding lines to the same order
    -- then take turns, and (READ COMMITTED: a new snapshot per statement) the second one's
    -- sums below include the first one's committed lines.
    PERFORM 1 FROM app.orders WHERE id = ANY (p_order_ids) ORDER BY id FOR NO KEY UPDATE;

    UPDATE app.orders AS o
       SET item_count     = s.item_count,
           subtotal       = s.subtotal,
           discount_total = s.discount_total,
           total_amount   = s.subtotal - s.discount_total
      FROM (SELECT x.id,
                   coalesce(sum(i.quantity), 0)::integer    AS item_count,
                   coalesce(sum(i.quantity * i.unit_price), 0) AS subtotal,
                   coalesce(sum(i.discount), 0)              AS discount_total
              FROM unnest(p_order_ids) AS x (id)
              LEFT JOIN app.order_items AS i ON i.order_id = x.id
             GROUP BY x.id) AS s
     WHERE o.id = s.id
       AND (o.item_count, o.subtotal, o.discount_total)
           IS DISTINCT FROM (s.item_count, s.subtotal, s.discount_total);
END
$$;

-- One trigger function for the three statement-level triggers below. Each sees only the
-- transition tables of its own event, hence one branch per TG_OP. A multi-row INSERT
-- (a bulk load) recomputes each affected order once; a single-row write is just a
-- statement of one row.
CREATE FUNCTION app.order_items_maintain_totals() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    v_order_ids bigint[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT order_id) INTO v_order_ids FROM new_items;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT order_id) INTO v_order_ids FROM old_items;
    ELSE  -- UPDATE: a line may even move from one order to another
        SELECT array_agg(DISTINCT order_id) INTO v_order_ids
          FROM (SELECT order_id FROM new_items UNION ALL SELECT order_id FROM old_items) AS u;
    END IF;
    IF v_order_ids IS NOT NULL THEN
        PERFORM app.recompute_order_totals(v_order_ids);
    END IF;
    RETURN NULL;
END
$$;

-- (PostgreSQL allows transition tables only on single-event triggers: three triggers.)
CREATE TRIGGER order_items_totals_ins AFTER INSERT ON app.order_items
    REFERENCING NEW TABLE AS new_items
    FOR EACH STATEMENT EXECUTE FUNCTION app.order_items_maintain_totals();
CREATE TRIGGER order_items_totals_upd AFTER UPDATE ON app.order_items
    REFERENCING OLD TABLE AS old_items NEW TABLE AS new_items
    FOR EACH STATEMENT EXECUTE FUNCTION app.order_items_maintain_totals();
CREATE TRIGGER order_items_totals_del AFTER DELETE ON app.order_items
    REFERENCING OLD TABLE AS old_items
    FOR EACH STATEMENT EXECUTE FUNCTION app.order_items_maintain_totals();

-- =======================================================================================
-- 4. status rules
-- =======================================================================================

-- ---- orders ---------------------------------------------------------------------------
-- pending -> paid -> shipped -> delivered -> returned; pending/paid -> cancelled.
CREATE FUNCTION app.order_transition_allowed(p_from text, p_to text) RETURNS boolean
LANGUAGE sql IMMUTABLE
AS $$
    SELECT (p_from, p_to) IN (('pending', 'paid'), ('paid', 'shipped'), ('shipped', 'delivered'),
                              ('pending', 'cancelled'), ('paid', 'cancelled'),
                              ('delivered', 'returned'))
$$;

-- BEFORE UPDATE OF status: refuse illegal transitions (CD002), stamp the status time
-- (a writer may supply it, e.g. the seed replaying history; otherwise now()).
CREATE FUNCTION app.orders_guard_status() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF NOT app.order_transition_allowed(OLD.status, NEW.status) THEN
        PERFORM app.raise_error('CD002',
            format('order %s cannot go from %s to %s', OLD.id, OLD.status, NEW.status),
            jsonb_build_object('entity', 'order', 'id', OLD.id,
                               'from', OLD.status, 'to', NEW.status));
    END IF;
    CASE NEW.status
        WHEN 'paid'      THEN NEW.paid_at      := coalesce(NEW.paid_at, now());
        WHEN 'shipped'   THEN NEW.shipped_at   := coalesce(NEW.shipped_at, now());
        WHEN 'delivered' THEN NEW.delivered_at := coalesce(NEW.delivered_at, now());
        WHEN 'cancelled' THEN NEW.cancelled_at := coalesce(NEW.cancelled_at, now());
        WHEN 'returned'  THEN NEW.returned_at  := coalesce(NEW.returned_at, now());
        ELSE NULL;
    END CASE;
    RETURN NEW;
END
$$;

CREATE TRIGGER orders_guard_status BEFORE UPDATE OF status ON app.orders
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION app.orders_guard_status();

-- The time an order reached its current status (ordered_at for the first one).
CREATE FUNCTION app.order_status_time(o app.orders) RETURNS timestamptz
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(CASE o.status
                        WHEN 'pending'   THEN o.ordered_at
                        WHEN 'paid'      THEN o.paid_at
                        WHEN 'shipped'   THEN o.shipped_at
                        WHEN 'delivered' THEN o.delivered_at
                        WHEN 'cancelled' THEN o.cancelled_at
                        WHEN 'returned'  THEN o.returned_at
                    END, now())
$$;

-- AFTER INSERT (statement level, so a bulk load writes its history in one statement):
-- the first history row of every new order, NULL -> status.
CREATE FUNCTION app.orders_log_initial_status() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO app.order_status_history (order_id, from_status, to_status, changed_at, changed_by)
    SELECT n.id, NULL, n.status, app.order_status_time(n), app.current_actor()
      FROM new_orders AS n
     ORDER BY n.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER orders_log_initial_status AFTER INSERT ON app.orders
    REFERENCING NEW TABLE AS new_orders
    FOR EACH STATEMENT EXECUTE FUNCTION app.orders_log_initial_status();

-- AFTER UPDATE OF status: history row (old -> new) and NOTIFY cdms_order_status.
CREATE FUNCTION app.orders_log_status_change() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    v_at timestamptz := app.order_status_time(NEW);
BEGIN
    INSERT INTO app.order_status_history (order_id, from_status, to_status, changed_at, changed_by)
    VALUES (NEW.id, OLD.status, NEW.status, v_at, app.current_actor());
    PERFORM pg_notify('cdms_order_status', json_build_object(
        'order_id', NEW.id, 'customer_id', NEW.customer_id,
        'from', OLD.status, 'to', NEW.status, 'changed_at', v_at)::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER orders_log_status_change AFTER UPDATE OF status ON app.orders
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION app.orders_log_status_change();

-- ---- returns --------------------------------------------------------------------------
-- requested -> approved | rejected; a decision is final.
CREATE FUNCTION app.return_transition_allowed(p_from text, p_to text) RETURNS boolean
LANGUAGE sql IMMUTABLE
AS $$ SELECT p_from = 'requested' AND p_to IN ('approved', 'rejected') $$;

CREATE FUNCTION app.returns_guard_status() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF NOT app.return_transition_allowed(OLD.status, NEW.status) THEN
        PERFORM app.raise_error('CD002',
            format('return %s cannot go from %s to %s', OLD.id, OLD.status, NEW.status),
            jsonb_build_object('entity', 'return', 'id', OLD.id,
                               'from', OLD.status, 'to', NEW.status));
    END IF;
    NEW.decided_at := coalesce(NEW.decided_at, now());
    NEW.decided_by := coalesce(NEW.decided_by, app.current_actor());
    RETURN NEW;
END
$$;

CREATE TRIGGER returns_guard_status BEFORE UPDATE OF status ON app.returns
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION app.returns_guard_status();

CREATE FUNCTION app.returns_notify_status() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('cdms_return_status', json_build_object(
        'return_id', NEW.id, 'order_id', NEW.order_id, 'customer_id', NEW.customer_id,
        'from', OLD.status, 'to', NEW.status)::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER returns_notify_status AFTER UPDATE OF status ON app.returns
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION app.returns_notify_status();

-- Never more returned than bought: the requested + approved quantity of a line stays
-- within the line's quantity, whoever writes. The line is locked so that two concurrent
-- requests for the same line take turns.
CREATE FUNCTION app.returns_check_quantity() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    v_bought integer;
    v_taken  integer;
BEGIN
    IF NEW.status NOT IN ('requested', 'approved') THEN
        RETURN NEW;
    END IF;
    SELECT quantity INTO v_bought
      FROM app.order_items
     WHERE order_id = NEW.order_id AND line_no = NEW.line_no
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        PERFORM app.raise_error('CD003',
            format('order %s has no line %s', NEW.order_id, NEW.line_no),
            jsonb_build_object('entity', 'order_item', 'id', NEW.order_id || '/' || NEW.line_no,
                               'order_id', NEW.order_id, 'line_no', NEW.line_no));
    END IF;
    SELECT coalesce(sum(quantity), 0) INTO v_taken
      FROM app.returns
     WHERE order_id = NEW.order_id AND line_no = NEW.line_no
       AND status IN ('requested', 'approved')
       AND id <> NEW.id;
    IF NEW.quantity > v_bought - v_taken THEN
        PERFORM app.raise_error('CD004',
            format('cannot return %s of order %s line %s: %s bought, %s already returned or requested',
                   NEW.quantity, NEW.order_id, NEW.line_no, v_bought, v_taken),
            jsonb_build_object('field', 'quantity', 'reason', 'exceeds the returnable quantity',
                               'wanted', NEW.quantity, 'returnable', v_bought - v_taken));
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER returns_check_quantity BEFORE INSERT OR UPDATE OF quantity, order_id, line_no
    ON app.returns
    FOR EACH ROW EXECUTE FUNCTION app.returns_check_quantity();

-- ---- support tickets -----------------------------------------------------------------
-- Any status may follow any other, except that closed is final.
CREATE FUNCTION app.ticket_transition_allowed(p_from text, p_to text) RETURNS boolean
LANGUAGE sql IMMUTABLE
AS $$ SELECT p_from <> 'closed' AND p_from <> p_to $$;

-- BEFORE INSERT OR UPDATE: transitions (CD002) and their timestamps; satisfaction only
-- for a resolved or closed ticket (CD004).
CREATE FUNCTION app.support_tickets_guard() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.status IS DISTINCT FROM OLD.status THEN
        IF NOT app.ticket_transition_allowed(OLD.status, NEW.status) THEN
            PERFORM app.raise_error('CD002',
                format('ticket %s cannot go from %s to %s', OLD.id, OLD.status, NEW.status),
                jsonb_build_object('entity', 'ticket', 'id', OLD.id,
                                   'from', OLD.status, 'to', NEW.status));
        END IF;
        CASE NEW.status
            WHEN 'resolved' THEN
                NEW.resolved_at := coalesce(NEW.resolved_at, now());
            WHEN 'closed' THEN
                NEW.resolved_at := coalesce(NEW.resolved_at, now());
                NEW.closed_at   := coalesce(NEW.closed_at, now());
            ELSE  -- reopened (open / in_progress): the resolution and its rating are void
                NEW.resolved_at  := NULL;
                NEW.satisfaction := NULL;
        END CASE;
        NEW.updated_by := coalesce(app.current_actor(), NEW.updated_by);
    END IF;
    IF NEW.satisfaction IS NOT NULL AND NEW.status NOT IN ('resolved', 'closed') THEN
        PERFORM app.raise_error('CD004',
            format('satisfaction can only be given for a resolved or closed ticket (ticket is %s)',
                   NEW.status),
            jsonb_build_object('field', 'satisfaction',
                               'reason', 'only for resolved or closed tickets',
                               'status', NEW.status));
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER support_tickets_guard BEFORE INSERT OR UPDATE ON app.support_tickets
    FOR EACH ROW EXECUTE FUNCTION app.support_tickets_guard();

CREATE FUNCTION app.support_tickets_notify_status() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('cdms_ticket_status', json_build_object(
        'ticket_id', NEW.id, 'customer_id', NEW.customer_id,
        'from', OLD.status, 'to', NEW.status)::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER support_tickets_notify_status AFTER UPDATE OF status ON app.support_tickets
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION app.support_tickets_notify_status();

-- =======================================================================================
-- 5. ownership: an order named by feedback, a ticket or a return is the customer's own
-- =======================================================================================

-- For feedback and support_tickets: NEW.order_id (if any) must belong to NEW.customer_id.
-- For returns: customer_id is filled from the order when omitted, and checked otherwise.
CREATE FUNCTION app.check_order_customer() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    v_customer_id bigint;
BEGIN
    IF NEW.order_id IS NULL THEN
        RETURN NEW;
    END IF;
    SELECT customer_id INTO v_customer_id FROM app.orders WHERE id = NEW.order_id;
    IF NOT FOUND THEN
        PERFORM app.raise_error('CD003', format('order %s not found', NEW.order_id),
            jsonb_build_object('entity', 'order', 'id', NEW.order_id));
    END IF;
    IF TG_TABLE_NAME = 'returns' AND NEW.customer_id IS NULL THEN
        NEW.customer_id := v_customer_id;
    ELSIF NEW.customer_id IS DISTINCT FROM v_customer_id THEN
        PERFORM app.raise_error('CD004',
            format('order %s does not belong to customer %s', NEW.order_id, NEW.customer_id),
            jsonb_build_object('field', 'order_id', 'reason', 'order belongs to another customer',
                               'order_id', NEW.order_id, 'customer_id', NEW.customer_id));
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER check_order_customer BEFORE INSERT OR UPDATE OF order_id, customer_id
    ON app.feedback
    FOR EACH ROW EXECUTE FUNCTION app.check_order_customer();
CREATE TRIGGER check_order_customer BEFORE INSERT OR UPDATE OF order_id, customer_id
    ON app.support_tickets
    FOR EACH ROW EXECUTE FUNCTION app.check_order_customer();
CREATE TRIGGER check_order_customer BEFORE INSERT OR UPDATE OF order_id, customer_id
    ON app.returns
    FOR EACH ROW EXECUTE FUNCTION app.check_order_customer();

-- =======================================================================================
-- 6. procedures
-- =======================================================================================

-- ---- app.place_order ------------------------------------------------------------------
-- p_items: [{"product_id": 1, "quantity": 2, "discount": "0.00"}, ...] (discount optional,
-- a number or a decimal string, at most 2 decimals, 0 <= discount <= quantity x price).
-- A product may appear once per basket: a repeated product_id is refused (CD004), not
-- merged, so that line n of the order is item n of the basket.
-- Products are locked in id order, so concurrent baskets never deadlock; the lock is
-- FOR NO KEY UPDATE (the lock the stock UPDATE takes anyway), which unlike FOR UPDATE lets
-- concurrent inserts that merely reference the product (feedback, bulk lines) through.
CREATE FUNCTION app.place_order(
    p_customer_id    bigint,
    p_items          jsonb,
    p_channel        text,
    p_payment_method text
) RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    v_item        record;
    v_product_id  numeric;
    v_quantity    numeric;
    v_discount    numeric;
    v_product_ids bigint[]  := '{}';
    v_quantities  integer[] := '{}';
    v_discounts   numeric[] := '{}';
    v_missing     bigint;
    v_line        record;
    v_order_id    bigint;
    v_constraint  text;
    v_column      text;
BEGIN
    -- the customer -------------------------------------------------------------------
    IF NOT EXISTS (SELECT 1 FROM app.customers WHERE id = p_customer_id) THEN
        PERFORM app.raise_error('CD003', format('customer %s not found', p_customer_id),
            jsonb_build_object('entity', 'customer', 'id', p_customer_id));
    END IF;

    -- the basket's shape ----------------------------------------------------------------
    IF p_items IS NULL OR jsonb_typeof(p_items) <> 'array' THEN
        PERFORM app.raise_error('CD004', 'items must be a JSON array',
            jsonb_build_object('field', 'items', 'reason', 'not an array'));
    END IF;
    IF jsonb_array_length(p_items) = 0 THEN
        PERFORM app.raise_error('CD004', 'the basket is empty',
            jsonb_build_object('field', 'items', 'reason', 'empty basket'));
    END IF;

    FOR v_item IN SELECT e.value AS item, e.ordinality::integer AS idx
                    FROM jsonb_array_elements(p_items) WITH ORDINALITY AS e
    LOOP
        IF jsonb_typeof(v_item.item) <> 'object' THEN
            PERFORM app.raise_error('CD004', format('item %s is not an object', v_item.idx),
                jsonb_build_object('field', 'items', 'reason', 'not an object',
                                   'index', v_item.idx));
        END IF;
        v_product_id := app.jsonb_to_numeric(v_item.item -> 'product_id');
        IF v_product_id IS NULL OR v_product_id <> trunc(v_product_id) OR v_product_id < 1
           OR v_product_id > 9223372036854775807 THEN
            PERFORM app.raise_error('CD004',
                format('item %s: product_id must be a positive integer', v_item.idx),
                jsonb_build_object('field', 'product_id', 'reason', 'not a positive integer',
                                   'index', v_item.idx, 'value', v_item.item -> 'product_id'));
        END IF;
        v_quantity := app.jsonb_to_numeric(v_item.item -> 'quantity');
        IF v_quantity IS NULL OR v_quantity <> trunc(v_quantity) OR v_quantity < 1
           OR v_quantity > 2147483647 THEN
            PERFORM app.raise_error('CD004',
                format('item %s: quantity must be a positive integer', v_item.idx),
                jsonb_build_object('field', 'quantity', 'reason', 'not a positive integer',
                                   'index', v_item.idx, 'value', v_item.item -> 'quantity'));
        END IF;
        IF v_item.item -> 'discount' IS NULL OR v_item.item -> 'discount' = 'null' THEN
            v_discount := 0;
        ELSE
            v_discount := app.jsonb_to_numeric(v_item.item -> 'discount');
            IF v_discount IS NULL OR v_discount < 0 OR v_discount <> round(v_discount, 2) THEN
                PERFORM app.raise_error('CD004',
                    format('item %s: discount must be a non-negative amount with at most 2 decimals',
                           v_item.idx),
                    jsonb_build_object('field', 'discount', 'reason', 'not a non-negative amount',
                                       'index', v_item.idx, 'value', v_item.item -> 'discount'));
            END IF;
        END IF;
        IF v_product_id = ANY (v_product_ids) THEN
            PERFORM app.raise_error('CD004',
                format('item %s: product %s is already in the basket', v_item.idx, v_product_id),
                jsonb_build_object('field', 'items', 'reason', 'duplicate product',
                                   'index', v_item.idx, 'product_id', v_product_id));
        END IF;
        v_product_ids := v_product_ids || v_product_id::bigint;
        v_quantities  := v_quantities || v_quantity::integer;
        v_discounts   := v_discounts || v_discount;
    END LOOP;

    -- the products: all known ----------------------------------------------------------
    SELECT min(x.id) INTO v_missing
      FROM unnest(v_product_ids) AS x (id)
     WHERE NOT EXISTS (SELECT 1 FROM app.products AS p WHERE p.id = x.id);
    IF v_missing IS NOT NULL THEN
        PERFORM app.raise_error('CD003', format('product %s not found', v_missing),
            jsonb_build_object('entity', 'product', 'id', v_missing));
    END IF;

    -- the order (its CHECKs validate channel and payment method) ------------------------
    BEGIN
        INSERT INTO app.orders (customer_id, channel, payment_method, created_by)
        VALUES (p_customer_id, p_channel, p_payment_method, app.current_actor())
        RETURNING id INTO v_order_id;
    EXCEPTION WHEN check_violation OR not_null_violation THEN
        GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME, v_column = COLUMN_NAME;
        PERFORM app.raise_bad_column('orders', v_constraint, v_column,
            jsonb_build_object('channel', p_channel, 'payment_method', p_payment_method));
    END;

    -- lock the products in id order, then check them against the basket ------------------
    FOR v_line IN
        SELECT p.id, p.sku, p.stock, p.unit_price, p.active, b.quantity, b.discount, b.idx
          FROM app.products AS p
          JOIN unnest(v_product_ids, v_quantities, v_discounts) WITH ORDINALITY
               AS b (product_id, quantity, discount, idx) ON b.product_id = p.id
         ORDER BY p.id
           FOR NO KEY UPDATE OF p
    LOOP
        IF NOT v_line.active THEN
            PERFORM app.raise_error('CD004', format('product %s is not for sale', v_line.sku),
                jsonb_build_object('field', 'product_id', 'reason', 'product is not active',
                                   'index', v_line.idx, 'product_id', v_line.id, 'sku', v_line.sku));
        END IF;
        IF v_line.discount > v_line.quantity * v_line.unit_price THEN
            PERFORM app.raise_error('CD004',
                format('item %s: discount %s exceeds the line''s gross %s',
                       v_line.idx, v_line.discount, v_line.quantity * v_line.unit_price),
                jsonb_build_object('field', 'discount', 'reason', 'exceeds the line gross',
                                   'index', v_line.idx, 'value', v_line.discount,
                                   'gross', v_line.quantity * v_line.unit_price));
        END IF;
        IF v_line.stock < v_line.quantity THEN
            PERFORM app.raise_error('CD001',
                format('out of stock: %s (wanted %s, available %s)',
                       v_line.sku, v_line.quantity, v_line.stock),
                jsonb_build_object('sku', v_line.sku, 'wanted', v_line.quantity,
                                   'available', v_line.stock));
        END IF;
    END LOOP;

    -- the lines, at today's prices (one statement: the totals trigger runs once) ---------
    INSERT INTO app.order_items (order_id, line_no, product_id, quantity, unit_price, discount)
    SELECT v_order_id, b.idx, b.product_id, b.quantity, p.unit_price, b.discount
      FROM unnest(v_product_ids, v_quantities, v_discounts) WITH ORDINALITY
           AS b (product_id, quantity, discount, idx)
      JOIN app.products AS p ON p.id = b.product_id
     ORDER BY b.idx;

    -- the stock ----------------------------------------------------------------------------
    UPDATE app.products AS p
       SET stock = p.stock - b.quantity
      FROM unnest(v_product_ids, v_quantities) AS b (product_id, quantity)
     WHERE p.id = b.product_id;

    RETURN v_order_id;
END
$$;

-- ---- app.set_order_status -------------------------------------------------------------
CREATE FUNCTION app.set_order_status(p_order_id bigint, p_status text) RETURNS app.orders
LANGUAGE plpgsql
AS $$
DECLARE
    v_order app.orders;
BEGIN
    -- (the same list as the CHECK on app.orders.status)
    IF p_status IS NULL OR p_status NOT IN ('pending', 'paid', 'shipped', 'delivered',
                                            'cancelled', 'returned') THEN
        PERFORM app.raise_error('CD004', format('unknown order status: %s', coalesce(p_status, 'null')),
            jsonb_build_object('field', 'status', 'reason', 'unknown status', 'value', p_status));
    END IF;
    SELECT * INTO v_order FROM app.orders WHERE id = p_order_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        PERFORM app.raise_error('CD003', format('order %s not found', p_order_id),
            jsonb_build_object('entity', 'order', 'id', p_order_id));
    END IF;
    -- (the guard trigger would refuse too; checking first keeps the restock below clean)
    IF NOT app.order_transition_allowed(v_order.status, p_status) THEN
        PERFORM app.raise_error('CD002',
            format('order %s cannot go from %s to %s', p_order_id, v_order.status, p_status),
            jsonb_build_object('entity', 'order', 'id', p_order_id,
                               'from', v_order.status, 'to', p_status));
    END IF;

    -- the order (and its history) first, the stock last: every writer takes the tables in
    -- one order (db/migrations/sqlfile.py, WRITE_ORDER), which migrations lock them in too
    UPDATE app.orders SET status = p_status WHERE id = p_order_id RETURNING * INTO v_order;

    IF p_status = 'cancelled' THEN
        -- give the stock back, locking the products in id order like place_order
        PERFORM 1 FROM app.products
         WHERE id IN (SELECT product_id FROM app.order_items WHERE order_id = p_order_id)
         ORDER BY id
           FOR NO KEY UPDATE;
        UPDATE app.products AS p
           SET stock = p.stock + l.quantity
          FROM (SELECT product_id, sum(quantity)::integer AS quantity
                  FROM app.order_items WHERE order_id = p_order_id
                 GROUP BY product_id) AS l
         WHERE p.id = l.product_id;
    END IF;

    RETURN v_order;
END
$$;

-- ---- returns --------------------------------------------------------------------------
CREATE FUNCTION app.request_return(
    p_order_id bigint,
    p_line_no  integer,
    p_quantity integer,
    p_reason   text,
    p_comment  text DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    v_status     text;
    v_return_id  bigint;
    v_constraint text;
    v_column     text;
BEGIN
    -- locking the order serialises requests against approvals of the same order
    SELECT status INTO v_status FROM app.orders WHERE id = p_order_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        PERFORM app.raise_error('CD003', format('order %s not found', p_order_id),
            jsonb_build_object('entity', 'order', 'id', p_order_id));
    END IF;
    IF v_status <> 'delivered' THEN
        PERFORM app.raise_error('CD005',
            format('order %s is %s: only delivered orders can be returned', p_order_id, v_status),
            jsonb_build_object('entity', 'order', 'id', p_order_id,
                               'reason', 'order is not delivered', 'status', v_status));
    END IF;
    IF p_quantity IS NULL OR p_quantity < 1 THEN
        PERFORM app.raise_error('CD004', 'quantity must be a positive integer',
            jsonb_build_object('field', 'quantity', 'reason', 'not a positive integer',
                               'value', p_quantity));
    END IF;
    -- the line's existence and the returnable quantity: trigger returns_check_quantity;
    -- the customer: trigger check_order_customer; the reason: the table's CHECK
    BEGIN
        INSERT INTO app.returns (order_id, line_no, reason, quantity, comment, requested_by)
        VALUES (p_order_id, p_line_no, p_reason, p_quantity, p_comment, app.current_actor())
        RETURNING id INTO v_return_id;
    EXCEPTION WHEN check_violation OR not_null_violation THEN
        GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME, v_column = COLUMN_NAME;
        PERFORM app.raise_bad_column('returns', v_constraint, v_column,
            jsonb_build_object('reason', p_reason, 'line_no', p_line_no));
    END;
    RETURN v_return_id;
END
$$;

-- Lock order: the order, then the return (like request_return, which locks the order).
CREATE FUNCTION app.lock_return(p_return_id bigint) RETURNS app.returns
LANGUAGE plpgsql
AS $$
DECLARE
    v_return app.returns;
BEGIN
    PERFORM 1 FROM app.orders
     WHERE id = (SELECT order_id FROM app.returns WHERE id = p_return_id)
       FOR NO KEY UPDATE;
    SELECT * INTO v_return FROM app.returns WHERE id = p_return_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        PERFORM app.raise_error('CD003', format('return %s not found', p_return_id),
            jsonb_build_object('entity', 'return', 'id', p_return_id));
    END IF;
    RETURN v_return;
END
$$;

CREATE FUNCTION app.approve_return(p_return_id bigint, p_refund_amount numeric DEFAULT NULL)
RETURNS app.returns
LANGUAGE plpgsql
AS $$
DECLARE
    v_return     app.returns := app.lock_return(p_return_id);
    v_line       app.order_items;
    v_max_refund numeric;
BEGIN
    IF v_return.status <> 'requested' THEN
        PERFORM app.raise_error('CD002',
            format('return %s is already %s', p_return_id, v_return.status),
            jsonb_build_object('entity', 'return', 'id', p_return_id,
                               'from', v_return.status, 'to', 'approved'));
    END IF;
    SELECT * INTO v_line FROM app.order_items
     WHERE order_id = v_return.order_id AND line_no = v_return.line_no;
    -- what the customer paid for the returned units
    v_max_refund := round(v_line.line_total * v_return.quantity / v_line.quantity, 2);
    IF p_refund_amount IS NOT NULL
       AND (p_refund_amount < 0 OR p_refund_amount > v_max_refund
            OR p_refund_amount <> round(p_refund_amount, 2)) THEN
        PERFORM app.raise_error('CD004',
            format('refund %s must be between 0 and %s (what was paid for the returned units)',
                   p_refund_amount, v_max_refund),
            jsonb_build_object('field', 'refund_amount', 'reason', 'out of range',
                               'value', p_refund_amount, 'max', v_max_refund));
    END IF;

    UPDATE app.returns
       SET status = 'approved',
           refund_amount = coalesce(p_refund_amount, v_max_refund),
           decided_at = now(),
           decided_by = app.current_actor()
     WHERE id = p_return_id
    RETURNING * INTO v_return;

    -- every unit of every line returned: the order is returned (history + NOTIFY)
    IF (SELECT status FROM app.orders WHERE id = v_return.order_id) = 'delivered'
       AND NOT EXISTS (
           SELECT 1
             FROM app.order_items AS i
            WHERE i.order_id = v_return.order_id
              AND i.quantity > (SELECT coalesce(sum(r.quantity), 0)
                                  FROM app.returns AS r
                                 WHERE r.order_id = i.order_id AND r.line_no = i.line_no
                                   AND r.status = 'approved'))
    THEN
        PERFORM app.set_order_status(v_return.order_id, 'returned');
    END IF;

    -- the stock last (the return, the order, then the stock: db/migrations/sqlfile.py)
    UPDATE app.products SET stock = stock + v_return.quantity WHERE id = v_line.product_id;
    RETURN v_return;
END
$$;

-- Rejecting keeps the request's comment unless a new one is given.
CREATE FUNCTION app.reject_return(p_return_id bigint, p_comment text DEFAULT NULL)
RETURNS app.returns
LANGUAGE plpgsql
AS $$
DECLARE
    v_return app.returns := app.lock_return(p_return_id);
BEGIN
    IF v_return.status <> 'requested' THEN
        PERFORM app.raise_error('CD002',
            format('return %s is already %s', p_return_id, v_return.status),
            jsonb_build_object('entity', 'return', 'id', p_return_id,
                               'from', v_return.status, 'to', 'rejected'));
    END IF;
    UPDATE app.returns
       SET status = 'rejected',
           comment = coalesce(p_comment, comment),
           decided_at = now(),
           decided_by = app.current_actor()
     WHERE id = p_return_id
    RETURNING * INTO v_return;
    RETURN v_return;
END
$$;

-- ---- support tickets ------------------------------------------------------------------
CREATE FUNCTION app.open_ticket(
    p_customer_id bigint,
    p_category    text,
    p_priority    text,
    p_channel     text,
    p_subject     text,
    p_order_id    bigint DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    v_ticket_id  bigint;
    v_constraint text;
    v_column     text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM app.customers WHERE id = p_customer_id) THEN
        PERFORM app.raise_error('CD003', format('customer %s not found', p_customer_id),
            jsonb_build_object('entity', 'customer', 'id', p_customer_id));
    END IF;
    -- an unknown order (CD003) or another customer's order (CD004): check_order_customer
    BEGIN
        INSERT INTO app.support_tickets
               (customer_id, order_id, category, priority, channel, subject, opened_by, updated_by)
        VALUES (p_customer_id, p_order_id, p_category, p_priority, p_channel, p_subject,
                app.current_actor(), app.current_actor())
        RETURNING id INTO v_ticket_id;
    EXCEPTION WHEN check_violation OR not_null_violation THEN
        GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME, v_column = COLUMN_NAME;
        PERFORM app.raise_bad_column('support_tickets', v_constraint, v_column,
            jsonb_build_object('category', p_category, 'priority', p_priority,
                               'channel', p_channel, 'subject', p_subject));
    END;
    RETURN v_ticket_id;
END
$$;

CREATE FUNCTION app.set_ticket_status(
    p_ticket_id    bigint,
    p_status       text,
    p_satisfaction integer DEFAULT NULL
) RETURNS app.support_tickets
LANGUAGE plpgsql
AS $$
DECLARE
    v_ticket app.support_tickets;
BEGIN
    -- (the same list as the CHECK on app.support_tickets.status)
    IF p_status IS NULL OR p_status NOT IN ('open', 'in_progress', 'resolved', 'closed') THEN
        PERFORM app.raise_error('CD004', format('unknown ticket status: %s', coalesce(p_status, 'null')),
            jsonb_build_object('field', 'status', 'reason', 'unknown status', 'value', p_status));
    END IF;
    IF p_satisfaction IS NOT NULL AND p_satisfaction NOT BETWEEN 1 AND 5 THEN
        PERFORM app.raise_error('CD004', format('satisfaction must be 1 to 5, not %s', p_satisfaction),
            jsonb_build_object('field', 'satisfaction', 'reason', 'out of range 1-5',
                               'value', p_satisfaction));
    END IF;
    IF p_satisfaction IS NOT NULL AND p_status NOT IN ('resolved', 'closed') THEN
        PERFORM app.raise_error('CD004',
            format('satisfaction can only be given for a resolved or closed ticket (not %s)', p_status),
            jsonb_build_object('field', 'satisfaction',
                               'reason', 'only for resolved or closed tickets', 'status', p_status));
    END IF;
    SELECT * INTO v_ticket FROM app.support_tickets WHERE id = p_ticket_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        PERFORM app.raise_error('CD003', format('ticket %s not found', p_ticket_id),
            jsonb_build_object('entity', 'ticket', 'id', p_ticket_id));
    END IF;
    IF NOT app.ticket_transition_allowed(v_ticket.status, p_status) THEN
        PERFORM app.raise_error('CD002',
            format('ticket %s cannot go from %s to %s', p_ticket_id, v_ticket.status, p_status),
            jsonb_build_object('entity', 'ticket', 'id', p_ticket_id,
                               'from', v_ticket.status, 'to', p_status));
    END IF;
    -- timestamps (resolved_at, closed_at) and clearing on reopen: support_tickets_guard
    UPDATE app.support_tickets
       SET status = p_status,
           satisfaction = coalesce(p_satisfaction, satisfaction),
           updated_by = app.current_actor()
     WHERE id = p_ticket_id
    RETURNING * INTO v_ticket;
    RETURN v_ticket;
END
$$;

-- =======================================================================================
-- 7. views
-- =======================================================================================
-- Both views are a base row (customer / product) with LATERAL aggregates over the child
-- tables' indexes, so a filter on the id (WHERE customer_id = ANY(:ids)) is pushed down
-- to the base table's primary key and each aggregate reads only that row's children.
-- Revenue statuses: an order counts as revenue once paid (paid, shipped, delivered,
-- returned); a returned order stays in, and its approved refunds are subtracted.
-- security_invoker: the views read the base tables with the caller's rights, so row-level
-- security on those tables (issue 8) applies through the views too.

CREATE VIEW app.customer_summary WITH (security_invoker = true) AS
SELECT c.id AS customer_id,
       o.order_count,
       (o.revenue - r.refunded)::numeric(14,2) AS lifetime_value,
       round((o.revenue - r.refunded) / nullif(o.revenue_orders, 0), 2)::numeric(14,2)
           AS average_order_value,
       o.first_order_at,
       o.last_order_at,
       round(r.returned_units::numeric / nullif(o.delivered_units, 0), 4) AS return_rate,
       f.average_rating,
       t.open_ticket_count
  FROM app.customers AS c
 CROSS JOIN LATERAL (
       SELECT count(*) FILTER (WHERE status <> 'cancelled')                    AS order_count,
              count(*) FILTER (WHERE status IN ('paid', 'shipped', 'delivered', 'returned'))
                                                                                AS revenue_orders,
              coalesce(sum(total_amount)
                       FILTER (WHERE status IN ('paid', 'shipped', 'delivered', 'returned')), 0)
                                                                                AS revenue,
              coalesce(sum(item_count) FILTER (WHERE status IN ('delivered', 'returned')), 0)
                                                                                AS delivered_units,
              min(ordered_at) FILTER (WHERE status <> 'cancelled')             AS first_order_at,
              max(ordered_at) FILTER (WHERE status <> 'cancelled')             AS last_order_at
         FROM app.orders
        WHERE customer_id = c.id) AS o
 CROSS JOIN LATERAL (
       SELECT coalesce(sum(refund_amount), 0) AS refunded,
              coalesce(sum(quantity), 0)      AS returned_units
         FROM app.returns
        WHERE customer_id = c.id AND status = 'approved') AS r
 CROSS JOIN LATERAL (
       SELECT round(avg(rating), 2) AS average_rating
         FROM app.feedback
        WHERE customer_id = c.id) AS f
 CROSS JOIN LATERAL (
       SELECT count(*) AS open_ticket_count
         FROM app.support_tickets
        WHERE customer_id = c.id AND status IN ('open', 'in_progress')) AS t;

COMMENT ON VIEW app.customer_summary IS
    'One row per customer. order_count: orders not cancelled. lifetime_value: total_amount '
    'of orders once paid (paid, shipped, delivered, returned) minus approved refunds. '
    'average_order_value: lifetime_value / number of those orders (NULL without any). '
    'first/last_order_at: over orders not cancelled. return_rate: approved returned units / '
    'units of delivered or returned orders (NULL when nothing was delivered). '
    'average_rating: mean feedback rating. open_ticket_count: tickets open or in_progress. '
    'Filter by customer_id: the aggregates are LATERAL per customer over indexed children.';

CREATE VIEW app.product_performance WITH (security_invoker = true) AS
SELECT p.id AS product_id,
       p.sku,
       s.units_sold,
       (s.gross_revenue - s.refunded)::numeric(14,2) AS revenue,
       s.returned_units,
       round(s.returned_units::numeric / nullif(s.units_sold, 0), 4) AS return_rate,
       f.average_rating,
       f.feedback_count,
       f.complaint_count
  FROM app.products AS p
 CROSS JOIN LATERAL (
       SELECT coalesce(sum(i.quantity), 0)   AS units_sold,
              coalesce(sum(i.line_total), 0) AS gross_revenue,
              coalesce(sum(ret.quantity), 0) AS returned_units,
              coalesce(sum(ret.refunded), 0) AS refunded
         FROM app.order_items AS i
         LEFT JOIN LATERAL (
              SELECT sum(r.quantity) AS quantity, sum(r.refund_amount) AS refunded
                FROM app.returns AS r
               WHERE r.order_id = i.order_id AND r.line_no = i.line_no
                 AND r.status = 'approved') AS ret ON true
        WHERE i.product_id = p.id
          -- the line's order is a revenue order: a scalar subquery, so that it stays a
          -- primary-key lookup per line rather than a join the planner may turn into a
          -- scan of every order when it underestimates a product's lines
          AND (SELECT o.status FROM app.orders AS o WHERE o.id = i.order_id)
              IN ('paid', 'shipped', 'delivered', 'returned')) AS s
 CROSS JOIN LATERAL (
       SELECT round(avg(rating), 2)                    AS average_rating,
              count(*)                                 AS feedback_count,
              count(*) FILTER (WHERE kind = 'complaint') AS complaint_count
         FROM app.feedback
        WHERE product_id = p.id) AS f;

COMMENT ON VIEW app.product_performance IS
    'One row per product. units_sold / revenue: lines of orders once paid (paid, shipped, '
    'delivered, returned), revenue net of line discounts and approved refunds. '
    'returned_units: approved return quantities; return_rate = returned_units / units_sold '
    '(NULL without sales). average_rating, feedback_count, complaint_count: feedback naming '
    'the product. Filter by product_id: the aggregates are LATERAL per product.';
