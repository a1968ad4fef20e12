-- 0036: an order becomes returned through its returns only.
--
-- app.order_transition_allowed (0003) lets delivered -> returned for every writer, so a
-- service or admin key's setOrderStatus(RETURNED) of a delivered order with no return made
-- it returned with no return, no refund and no restock; and since app.request_return
-- takes returns of delivered orders only, none could be asked for afterwards: the refund
-- the status implies could never be recorded (hostile probe 12, finding 3).
--
-- The rule chosen, from the code: app.approve_return (0003, 0020, 0031) moves a delivered
-- order to returned, through app.set_order_status, exactly when approved returns cover
-- every unit of every line, and db/seed/checks.sql proves the same of the seeded shop ("an
-- order is 'returned' exactly when every unit came back approved"). So the move is
-- refused unless the order is in that state: the returns' own move passes (it is made in
-- that state, after the last approval), every other one is refused, in practice always
-- (approve_return leaves no delivered order whose every unit is approved back). Refusing
-- set_order_status(returned) outright instead would have needed the procedure to tell its
-- caller (approve_return, or a client) apart, and would have left a plain UPDATE of
-- app.orders (an admin's SQL) free; a state check in the trigger holds for every writer,
-- the owner included, and needs no caller's identity. Rows already returned stay as they
-- are (the trigger checks moves, not rows).
--
-- app.orders_guard_status (BEFORE UPDATE OF status) refuses delivered -> returned with
-- CD002 (INVALID_TRANSITION, 409), from, to, entity, id as every illegal transition, and
-- reason 'units not returned', units (bought) and returned_units (covered by approved
-- returns, at most a line's quantity per line). It reads the order's lines and returns
-- under the writer's row-level security: rows it cannot see only make it refuse.
--
-- Only a function is replaced: no app table is locked, no column changes.
-- Undone by 0036_returned_by_returns_down.sql.

CREATE OR REPLACE FUNCTION app.orders_guard_status() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    v_units    bigint;  -- the order's units
    v_returned bigint;  -- those approved returns cover
BEGIN
    IF NOT app.order_transition_allowed(OLD.status, NEW.status) THEN
        PERFORM app.raise_error('CD002',
            format('order %s cannot go from %s to %s', OLD.id, OLD.status, NEW.status),
            jsonb_build_object('entity', 'order', 'id', OLD.id,
                               'from', OLD.status, 'to', NEW.status));
    END IF;
    -- returned: what app.approve_return does once approved returns cover every unit
    IF NEW.status = 'returned' THEN
        SELECT coalesce(sum(i.quantity), 0), coalesce(sum(least(i.quantity, a.units)), 0)
          INTO v_units, v_returned
          FROM app.order_items AS i
         CROSS JOIN LATERAL (SELECT coalesce(sum(r.quantity), 0) AS units
                               FROM app.returns AS r
                              WHERE r.order_id = i.order_id AND r.line_no = i.line_no
                                AND r.status = 'approved') AS a
         WHERE i.order_id = OLD.id;
        IF v_units = 0 OR v_returned < v_units THEN
            PERFORM app.raise_error('CD002',
                format('order %s cannot go from %s to %s: %s of its %s units came back '
                       'through approved returns (approving returns of every unit moves '
                       'the order)', OLD.id, OLD.status, NEW.status, v_returned, v_units),
                jsonb_build_object('entity', 'order', 'id', OLD.id,
                                   'from', OLD.status, 'to', NEW.status,
                                   'reason', 'units not returned',
                                   'units', v_units, 'returned_units', v_returned));
        END IF;
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
