-- 0017: a customer may request a return of its own delivered order, and the service role
-- one of any.
--
-- app.returns_check_quantity (0003) locks the bought line with SELECT ... FOR NO KEY
-- UPDATE so that two requests for the same line take turns. Row-level security lets a row
-- lock through only where an UPDATE policy's USING holds, and customers had none on
-- app.order_items (0006), nor had the service role (its UPDATE policies cover orders,
-- returns, tickets and products): the lines were invisible to the lock, so every return
-- either asked for failed with "order N has no line L". These policies let a customer lock
-- the lines of its own orders, and the service role any line, and neither change one (WITH
-- CHECK false: an UPDATE of such a row is refused, as before none was visible to them).

CREATE POLICY own_lock ON app.order_items FOR UPDATE TO cdms_customer
    USING (EXISTS (SELECT 1 FROM app.orders AS o
                    WHERE o.id = order_id AND o.customer_id = (SELECT app.sec_customer())))
    WITH CHECK (false);

CREATE POLICY service_lock ON app.order_items FOR UPDATE TO cdms_api
    USING ((SELECT app.sec_role()) = 'service')
    WITH CHECK (false);
