-- 0025: every value the shop accepts fits what the warehouse, its views and the API's
-- summaries compute from it.
--
-- Without bounds a price, a stock or a basket the database took stopped the pipeline for
-- good: a stock of 2,147,483,647 (an integer's largest) made fact_stock_daily's levels
-- (stock now plus the units sold since a day) overflow units_on_hand (integer); an order of
-- 999,999,999,999.00 (100 units at 9,999,999,999.99) overflowed fact_customer_rfm.monetary
-- and the customer's lifetime value in app.customer_summary (numeric(14,2)), so every run
-- failed and every page of customers with summaries was refused, until the order was
-- cancelled. The bounds (docs/api.md, "Input limits"), and what each leaves room for:
--
--   unit price, cost    at most 1,000,000.00 a unit (products; order lines copy the price)
--   stock               at most 1,000,000,000 units: fact_stock_daily's level of a day is
--                       the stock now plus the units sold since, so 1.1 billion units of
--                       sales after restocks made by hand are left in an integer
--   a line's quantity   at most 100,000 units: a line's cost in fact_sales (quantity x
--                       the unit cost) stays below 10^11, within numeric(14,2) (10^12)
--   an order            comes to at most 1,000,000,000.00 before discounts (its subtotal):
--                       the order's and its lines' amounts in fact_orders and fact_sales
--                       (numeric(14,2)) keep a factor of 1,000 in hand
--
-- What adds up many orders cannot be bounded by one order's limit (a customer may place
-- thousands): the customer's and the product's sums in app.customer_summary and
-- app.product_performance are cast to numeric(20,2) (was 14,2), and fact_customer_rfm's
-- monetary and month_revenue widened to numeric(20,2): a change of precision only, which
-- PostgreSQL makes in the catalogue (no rewrite, its index kept: milliseconds at millions
-- of rows). Views that read those columns (the BI views of `cdms bi publish`) are dropped
-- and made again as they were, with their owner, grants and comment.
--
-- products: each rule is the column's one CHECK, named <table>_<column>_check, so a refusal
-- names the API's field (db/errors.py: BAD_USER_INPUT, "invalid stock", field "stock");
-- existing rows are validated (a product over a bound stops the upgrade, naming it; the
-- table is small). The lines and the orders are checked by their triggers as they are
-- written (app.order_items_maintain_totals, app.recompute_order_totals: CD004 naming
-- quantity or items), not by CHECKs, which would lock and scan both large tables under
-- ACCESS EXCLUSIVE, and would refuse every later change of a row written before (such as
-- cancelling the order that broke the pipeline).

-- ---------------------------------------------------------------------------------------
-- the RFM snapshot's sums (and the views that read them)
-- ---------------------------------------------------------------------------------------
DO $$
DECLARE
    v_views jsonb;
    v       jsonb;
    g       jsonb;
BEGIN
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'name', format('%I.%I', n.nspname, c.relname),
               'def', pg_get_viewdef(c.oid),
               'options', c.reloptions,
               'owner', c.relowner::regrole::text,
               'note', obj_description(c.oid, 'pg_class'),
               'grants', (SELECT coalesce(jsonb_agg(jsonb_build_array(
                                      CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                           ELSE a.grantee::regrole::text END,
                                      a.privilege_type)), '[]')
                            FROM aclexplode(c.relacl) AS a
                           WHERE a.grantee <> c.relowner))), '[]')
      INTO v_views
      FROM pg_class AS c
      JOIN pg_namespace AS n ON n.oid = c.relnamespace
     WHERE c.relkind = 'v'
       AND c.oid IN (SELECT r.ev_class FROM pg_depend AS d
                     JOIN pg_rewrite AS r ON r.oid = d.objid
                     WHERE d.classid = 'pg_rewrite'::regclass
                       AND d.refobjid = 'dw.fact_customer_rfm'::regclass);
    FOR v IN SELECT * FROM jsonb_array_elements(v_views) LOOP
        EXECUTE format('DROP VIEW %s', v ->> 'name');
    END LOOP;

    ALTER TABLE dw.fact_customer_rfm
        ALTER COLUMN monetary TYPE numeric(20,2),
        ALTER COLUMN month_revenue TYPE numeric(20,2);

    FOR v IN SELECT * FROM jsonb_array_elements(v_views) LOOP
        EXECUTE format('CREATE VIEW %s%s AS %s', v ->> 'name',
                       CASE WHEN jsonb_typeof(v -> 'options') = 'array'
                            THEN format(' WITH (%s)', (SELECT string_agg(o, ', ')
                                         FROM jsonb_array_elements_text(v -> 'options') AS o))
                            ELSE '' END,
                       v ->> 'def');
        EXECUTE format('ALTER VIEW %s OWNER TO %s', v ->> 'name', v ->> 'owner');
        IF v ->> 'note' IS NOT NULL THEN
            EXECUTE format('COMMENT ON VIEW %s IS %L', v ->> 'name', v ->> 'note');
        END IF;
        FOR g IN SELECT * FROM jsonb_array_elements(v -> 'grants') LOOP
            EXECUTE format('GRANT %s ON %s TO %s', g ->> 1, v ->> 'name', g ->> 0);
        END LOOP;
    END LOOP;
END
$$;

-- ---------------------------------------------------------------------------------------
-- lines and orders, checked by their triggers as they are written
-- ---------------------------------------------------------------------------------------
-- (as in 0003, with the bound on an order's subtotal: refused when a write makes an
-- order come to more than it may and more than it did, so an order written before the
-- bound can still lose lines)
CREATE OR REPLACE FUNCTION app.recompute_order_totals(p_order_ids bigint[]) RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    v_over record;
BEGIN
    -- Lock the orders first, in id order: two transactions adding lines to the same order
    -- then take turns, and (READ COMMITTED: a new snapshot per statement) the second one's
    -- sums below include the first one's committed lines.
    PERFORM 1 FROM app.orders WHERE id = ANY (p_order_ids) ORDER BY id FOR NO KEY UPDATE;

    SELECT s.id, s.subtotal INTO v_over
      FROM (SELECT i.order_id AS id, sum(i.quantity * i.unit_price) AS subtotal
              FROM app.order_items AS i
             WHERE i.order_id = ANY (p_order_ids)
             GROUP BY i.order_id) AS s
      JOIN app.orders AS o ON o.id = s.id
     WHERE s.subtotal > 1000000000 AND s.subtotal > o.subtotal
     ORDER BY s.id
     LIMIT 1;
    IF FOUND THEN
        PERFORM app.raise_error('CD004',
            format('an order comes to at most 1,000,000,000.00 before discounts: order %s '
                   'would come to %s', v_over.id, v_over.subtotal),
            jsonb_build_object('field', 'items', 'reason', 'order total over the maximum',
                               'value', v_over.subtotal, 'max', 1000000000.00));
    END IF;

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

-- (as in 0003, with the bound on a line's quantity, for the lines a statement writes)
CREATE OR REPLACE FUNCTION app.order_items_maintain_totals() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    v_order_ids bigint[];
    v_line      record;
BEGIN
    IF TG_OP <> 'DELETE' THEN
        SELECT n.order_id, n.line_no, n.quantity INTO v_line
          FROM new_items AS n WHERE n.quantity > 100000
         ORDER BY n.order_id, n.line_no LIMIT 1;
        IF FOUND THEN
            PERFORM app.raise_error('CD004',
                format('item %s: a line holds at most 100,000 units, got %s',
                       v_line.line_no, v_line.quantity),
                jsonb_build_object('field', 'quantity', 'reason', 'over the maximum',
                                   'index', v_line.line_no, 'value', v_line.quantity,
                                   'max', 100000));
        END IF;
    END IF;
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

-- (as in 0003, with the bound on a line's quantity told first, with the item's index:
-- a line of more units could overflow its line_total before the trigger sees it)
CREATE OR REPLACE FUNCTION app.place_order(
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
        IF v_quantity > 100000 THEN
            PERFORM app.raise_error('CD004',
                format('item %s: a line holds at most 100,000 units, got %s',
                       v_item.idx, v_quantity),
                jsonb_build_object('field', 'quantity', 'reason', 'over the maximum',
                                   'index', v_item.idx, 'value', v_quantity, 'max', 100000));
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

-- @lock: from here on app tables (db/migrations/sqlfile.py: writers wait only for the rest)
ALTER TABLE app.products
    DROP CONSTRAINT products_unit_price_check,
    ADD CONSTRAINT products_unit_price_check CHECK (unit_price >= 0 AND unit_price <= 1000000),
    DROP CONSTRAINT products_cost_check,
    ADD CONSTRAINT products_cost_check CHECK (cost >= 0 AND cost <= 1000000),
    DROP CONSTRAINT products_stock_check,
    ADD CONSTRAINT products_stock_check CHECK (stock >= 0 AND stock <= 1000000000);

-- ---------------------------------------------------------------------------------------
-- the summaries: as in 0003_app_logic.sql, the sums cast to numeric(20,2)
-- ---------------------------------------------------------------------------------------
-- (after app.products' lock: a reader holding a view while it waits for the products,
-- one statement reading both, must not wait for us in turn; each view is waited for
-- as the tables are, briefly, and on a timeout the locks go and all of this is tried
-- again: db/migrations/sqlfile.py)
SET LOCAL lock_timeout = '200ms';
DROP VIEW app.customer_summary;
CREATE VIEW app.customer_summary WITH (security_invoker = true) AS
SELECT c.id AS customer_id,
       o.order_count,
       (o.revenue - r.refunded)::numeric(20,2) AS lifetime_value,
       round((o.revenue - r.refunded) / nullif(o.revenue_orders, 0), 2)::numeric(20,2)
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
GRANT SELECT ON app.customer_summary TO cdms_api, cdms_customer;

DROP VIEW app.product_performance;
CREATE VIEW app.product_performance WITH (security_invoker = true) AS
SELECT p.id AS product_id,
       p.sku,
       s.units_sold,
       (s.gross_revenue - s.refunded)::numeric(20,2) AS revenue,
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
GRANT SELECT ON app.product_performance TO cdms_api, cdms_customer;
SET LOCAL lock_timeout TO DEFAULT;
