-- 0031: a line's refunds add up to at most what was paid for it; a customer asks for a
-- return within 30 days of delivery (docs/api.md "Input limits", docs/security.md).
--
-- app.approve_return (0003, 0020) refunded round(line_total * q / quantity, 2) for each
-- return on its own and never compared a line's refunds with its total: a line of 3 units
-- for 176.96 returned one unit at a time refunded 58.99 three times, 176.97 (up to half a
-- cent a unit: ~500.00 on a 100,000-unit line), and a line of 10.00 refunded 3.33 three
-- times, 9.99. A return now refunds its units' share of the line as the difference of the
-- rounded shares before and after them (units k+1..k+q of n: round(total * (k+q) / n, 2)
-- - round(total * k / n, 2), k the units already approved): the shares of all the units
-- add up to line_total exactly (the last unit's is what the others left, when they were
-- refunded in full), and a refund the shop withheld for one unit (an explicit lower
-- refundAmount) stays withheld. Neither the default nor an explicit refund passes what is
-- left of the line (line_total less the refunds approved before): past it CD004 names
-- refund_amount with the max.
--
-- app.request_return (0003) took a return of any delivered order: a customer key's
-- CHANGED_MIND of an order delivered three years before. A customer principal
-- (cdms.role 'customer') asks within 30 days of delivered_at, whatever the reason (as
-- Amazon's 30 days for all: a defect found later is a warranty claim, which the shop's
-- service and admin keys, not bound, take as an exception; so does the owner, whose seed
-- writes returns of old orders): past it CD004, field order_id, reason 'return window
-- closed', window_end (UTC, to the second) and days.
--
-- Only functions are replaced: no app table is locked, no column changes.

CREATE OR REPLACE FUNCTION app.request_return(
    p_order_id bigint,
    p_line_no  integer,
    p_quantity integer,
    p_reason   text,
    p_comment  text DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    c_window     CONSTANT interval := interval '30 days';
    v_status     text;
    v_delivered  timestamptz;
    v_end        timestamptz;
    v_return_id  bigint;
    v_constraint text;
    v_column     text;
BEGIN
    -- locking the order serialises requests against approvals of the same order
    SELECT status, delivered_at INTO v_status, v_delivered
      FROM app.orders WHERE id = p_order_id FOR NO KEY UPDATE;
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
    -- a customer asks within the window; the shop's keys and the owner make exceptions (a
    -- delivered order without delivered_at, which set_order_status never leaves, is not bound)
    v_end := v_delivered + c_window;
    IF app.sec_role() = 'customer' AND v_end < now() THEN
        PERFORM app.raise_error('CD004',
            format('order %s was delivered on %s: a return is asked for within %s days of '
                   'delivery (until %s)', p_order_id,
                   to_char(v_delivered AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
                   extract(day FROM c_window),
                   to_char(v_end AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"')),
            jsonb_build_object('field', 'order_id', 'reason', 'return window closed',
                               'window_end',
                               to_char(v_end AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                               'days', extract(day FROM c_window)::integer));
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

CREATE OR REPLACE FUNCTION app.approve_return(p_return_id bigint, p_refund_amount numeric DEFAULT NULL)
RETURNS app.returns
LANGUAGE plpgsql
AS $$
DECLARE
    v_return     app.returns := app.lock_return(p_return_id);
    v_line       app.order_items;
    v_before     integer;  -- the line's units approved before this return
    v_refunded   numeric;  -- what they were refunded
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
    -- the order's lock (app.lock_return) holds other approvals of its lines back meanwhile
    SELECT coalesce(sum(quantity), 0), coalesce(sum(refund_amount), 0)
      INTO v_before, v_refunded
      FROM app.returns
     WHERE order_id = v_return.order_id AND line_no = v_return.line_no
       AND status = 'approved';
    -- what the customer paid for the returned units (their share of the line: the shares of
    -- all its units add up to line_total), at most what is left of the line
    v_max_refund := greatest(0, least(
        round(v_line.line_total * (v_before + v_return.quantity) / v_line.quantity, 2)
            - round(v_line.line_total * v_before / v_line.quantity, 2),
        v_line.line_total - v_refunded));
    IF p_refund_amount IS NOT NULL AND p_refund_amount <> round(p_refund_amount, 2) THEN
        PERFORM app.raise_error('CD004',
            format('refund %s has more than 2 decimals (an amount of money is in cents)',
                   app.shown(p_refund_amount::text)),
            jsonb_build_object('field', 'refund_amount', 'reason', 'too many decimals',
                               'value', app.clipped(to_jsonb(p_refund_amount))));
    END IF;
    IF p_refund_amount IS NOT NULL
       AND (p_refund_amount < 0 OR p_refund_amount > v_max_refund) THEN
        PERFORM app.raise_error('CD004',
            format('refund %s must be between 0 and %s (what was paid for the returned units%s)',
                   app.shown(p_refund_amount::text), v_max_refund,
                   CASE WHEN v_refunded > 0
                        THEN format('; %s of the line''s %s was refunded before',
                                    v_refunded, v_line.line_total)
                        ELSE '' END),
            jsonb_build_object('field', 'refund_amount', 'reason', 'out of range',
                               'value', app.clipped(to_jsonb(p_refund_amount)),
                               'max', v_max_refund));
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
