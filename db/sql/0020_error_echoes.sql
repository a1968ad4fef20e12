-- 0020: what a refusal tells a client about the value it refused.
--
-- app.raise_bad_column (0003) wrote "invalid <field>: <the value>" whole: a ticket subject
-- of 900,000 characters came back in the message and again in the detail's "value" (1.8 MB
-- for one refused request), and an empty subject read "invalid subject:". It now quotes at
-- most 64 characters of a value (app.shown: an ellipsis and the length past them) and says
-- what is wrong with a missing, empty or blank one.
--
-- app.approve_return (0003) told a refund with a third decimal ("1.001") as out of range
-- ("must be between 0 and 53.98"), which it was not: it now says the refund has more than
-- two decimals, with its own reason, and quotes a refund through app.shown. Its body is
-- otherwise 0003's.
--
-- Only functions are replaced: no app table is locked.

-- A value as an error quotes it: whole up to 64 characters, else its first 64 with an
-- ellipsis and its length ("yyyy… (900,000 characters)"). db.errors.shown is the same rule
-- for the API's own messages.
CREATE FUNCTION app.shown(p_value text) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE
        WHEN length(p_value) <= 64 THEN p_value
        ELSE left(p_value, 64) || '… (' || to_char(length(p_value), 'FM999,999,999,999')
             || ' characters)'
    END
$$;

-- A value as an error's detail carries it: whole up to 64 characters, else its first 64
-- with an ellipsis (the message tells the length).
CREATE FUNCTION app.clipped(p_value jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE
        WHEN p_value IS NULL OR length(p_value #>> '{}') <= 64 THEN p_value
        ELSE to_jsonb(left(p_value #>> '{}', 64) || '…')
    END
$$;

CREATE OR REPLACE FUNCTION app.raise_bad_column(
    p_table text, p_constraint text, p_column text, p_values jsonb
) RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    v_field text := coalesce(
        nullif(p_column, ''),
        regexp_replace(p_constraint, '^' || p_table || '_(.*)_check$', '\1'));
    v_value text := p_values ->> v_field;
    v_message text;
    v_reason text;
BEGIN
    -- a NOT NULL violation names its column; a CHECK its constraint (the value may be one
    -- the caller did not pass along: "invalid comment")
    IF nullif(p_column, '') IS NOT NULL THEN
        v_message := format('%s is required', v_field);
        v_reason := 'required';
    ELSIF v_value = '' THEN
        v_message := format('%s must not be empty', v_field);
        v_reason := 'empty';
    ELSIF btrim(v_value) = '' THEN
        v_message := format('%s must not be blank', v_field);
        v_reason := 'blank';
    ELSIF v_value IS NULL THEN
        v_message := format('invalid %s', v_field);
        v_reason := 'invalid value';
    ELSE
        v_message := format('invalid %s: %s', v_field, app.shown(v_value));
        v_reason := 'invalid value';
    END IF;
    PERFORM app.raise_error('CD004', v_message,
        jsonb_build_object('field', v_field, 'reason', v_reason,
                           'value', app.clipped(p_values -> v_field)));
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
