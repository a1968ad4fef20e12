-- 0032: a customer principal writes only the columns its mutations write, and moves stock
-- only inside the procedures that place and cancel orders (probe 6, finding L2).
--
-- Row-level security (0006) decides which rows cdms_customer writes, not which columns,
-- and the role held INSERT and UPDATE on whole tables. So a statement no mutation makes
-- (what layer 3 of docs/security.md is there for: a resolver bug, a forgotten check) could
-- back-date its own feedback out of the 24-hour window of the daily limit (0028), change
-- what a feedback is about (feedback_rules fires on some columns only), close and rate its
-- own ticket, insert an order already delivered, an approved return with a refund, rows
-- dated in the past (the daily limits of 0030 count by date), and set any product's stock:
-- the guard let every role below admin move stock, because place_order and cancelling run
-- as the invoker.
--
-- Column privileges now follow what each customer-reachable write names (a BEFORE
-- trigger's own changes, updated_at, cancelled_at, customer_id of a return, are not
-- checked against them):
--   app.feedback         INSERT what submitFeedback inserts; UPDATE rating, comment
--                        (updateFeedback)
--   app.support_tickets  INSERT what app.open_ticket inserts; no UPDATE (staff move
--                        tickets: app.set_ticket_status, service and admin only)
--   app.orders           INSERT what app.place_order inserts; UPDATE status (cancelling)
--                        and the totals app.recompute_order_totals keeps
--   app.returns          INSERT what app.request_return inserts; no UPDATE (deciding is
--                        for service and admin)
--   app.products         UPDATE stock only (place_order, cancelling; the row locks they
--                        take need an UPDATE privilege); no INSERT (no policy let one through)
--   app.customers        no INSERT or UPDATE (no policy let one through)
-- Left as they were: order_items (its INSERT names every column a line has; UPDATE is what
-- returns_check_quantity's row lock needs, own_lock's WITH CHECK false refuses a change),
-- idempotency_keys (each principal's own, 0009), and DELETE (no customer DELETE policy
-- exists: every customer DELETE matches no row).
--
-- Stock: the guard refuses a customer's stock change unless app.place_order or
-- app.set_order_status is on the call stack (PG_CONTEXT). Defence against a forgotten
-- check, not against SQL injection: a statement that may run any SQL may call them. (A
-- parameter set by the functions' SET clause was tried: ALTER FUNCTION ... SET of a
-- custom parameter needs a superuser in PostgreSQL 15, and migrations run as the owner.)
-- Service keeps moving stock freely (approve_return; its UPDATE privileges are unchanged).
--
-- GRANT, REVOKE and CREATE OR REPLACE FUNCTION lock no app table
-- (db/migrations/sqlfile.py); no column changes.

REVOKE INSERT, UPDATE ON app.feedback FROM cdms_customer;
GRANT INSERT (customer_id, order_id, product_id, kind, rating, comment) ON app.feedback
    TO cdms_customer;
GRANT UPDATE (rating, comment) ON app.feedback TO cdms_customer;

REVOKE INSERT, UPDATE ON app.support_tickets FROM cdms_customer;
GRANT INSERT (customer_id, order_id, category, priority, channel, subject, opened_by,
              updated_by) ON app.support_tickets TO cdms_customer;

REVOKE INSERT, UPDATE ON app.orders FROM cdms_customer;
GRANT INSERT (customer_id, channel, payment_method, created_by) ON app.orders TO cdms_customer;
GRANT UPDATE (status, item_count, subtotal, discount_total, total_amount) ON app.orders
    TO cdms_customer;

REVOKE INSERT, UPDATE ON app.returns FROM cdms_customer;
GRANT INSERT (order_id, line_no, reason, quantity, comment, requested_by) ON app.returns
    TO cdms_customer;

REVOKE INSERT, UPDATE ON app.products FROM cdms_customer;
GRANT UPDATE (stock) ON app.products TO cdms_customer;

REVOKE INSERT, UPDATE ON app.customers FROM cdms_customer;

-- 0021's guard, and: a customer's stock moves only inside those two procedures
CREATE OR REPLACE FUNCTION app.sec_guard_update() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    v_role text := app.sec_role();
    v_free text[];
    v_stack text;
BEGIN
    IF v_role IS NULL OR v_role = 'admin' THEN
        RETURN NEW;
    END IF;
    IF TG_TABLE_NAME = 'products' THEN
        IF v_role = 'customer' AND NEW.stock IS DISTINCT FROM OLD.stock THEN
            GET DIAGNOSTICS v_stack = PG_CONTEXT;
        END IF;
        IF v_stack IS NOT NULL
           AND v_stack !~ 'function (app\.)?(place_order|set_order_status)\(' THEN
            PERFORM app.raise_error('CD006',
                'a customer moves stock only by placing or cancelling an order',
                jsonb_build_object('reason', 'stock_moved_by_orders_only', 'role', v_role,
                                   'entity', 'product', 'id', NEW.id));
        END IF;
        v_free := ARRAY['stock', 'updated_at'];
    ELSIF v_role = 'customer' AND TG_TABLE_NAME = 'orders' THEN
        IF NEW.status IS DISTINCT FROM OLD.status AND NEW.status <> 'cancelled' THEN
            PERFORM app.raise_error('CD006',
                format('a customer may only cancel an order, not set it %s', NEW.status),
                jsonb_build_object('reason', 'customer_may_only_cancel', 'role', v_role,
                                   'entity', 'order', 'id', NEW.id, 'to', NEW.status));
        END IF;
        v_free := ARRAY['status', 'cancelled_at', 'updated_at', 'item_count', 'subtotal',
                        'discount_total', 'total_amount'];
    ELSE
        RETURN NEW;
    END IF;
    IF to_jsonb(NEW) - v_free IS DISTINCT FROM to_jsonb(OLD) - v_free THEN
        PERFORM app.raise_error('CD006',
            format('role %s may not change these fields of app.%s', v_role, TG_TABLE_NAME),
            jsonb_build_object('reason', 'field_not_writable', 'role', v_role,
                               'table', TG_TABLE_NAME));
    END IF;
    RETURN NEW;
END
$$;
