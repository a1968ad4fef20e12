-- 0032 down: cdms_customer's table-wide INSERT and UPDATE (0006), and 0021's guard. (Revoking a table privilege revokes the column
-- privileges 0032 granted too.)

REVOKE INSERT, UPDATE ON app.feedback, app.support_tickets, app.orders, app.returns,
                         app.products, app.customers FROM cdms_customer;
GRANT INSERT, UPDATE ON app.feedback, app.support_tickets, app.orders, app.returns,
                        app.products, app.customers TO cdms_customer;

CREATE OR REPLACE FUNCTION app.sec_guard_update() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    v_role text := app.sec_role();
    v_free text[];
BEGIN
    IF v_role IS NULL OR v_role = 'admin' THEN
        RETURN NEW;
    END IF;
    IF TG_TABLE_NAME = 'products' THEN
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
