-- 0031 undone: app.request_return takes a return of a delivered order at any time (as
-- 0003 made it) and app.approve_return refunds each return's rounded share of its line
-- (as 0020 made it). Only functions are replaced: no app table is locked.

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

CREATE OR REPLACE FUNCTION app.approve_return(p_return_id bigint, p_refund_amount numeric DEFAULT NULL)
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
            format('refund %s must be between 0 and %s (what was paid for the returned units)',
                   app.shown(p_refund_amount::text), v_max_refund),
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
