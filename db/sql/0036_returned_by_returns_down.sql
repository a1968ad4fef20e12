-- 0036 undone: app.orders_guard_status lets delivered -> returned for every writer, returns
-- or none (as 0003 made it). Only a function is replaced: no app table is locked.

CREATE OR REPLACE FUNCTION app.orders_guard_status() RETURNS trigger
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
