-- 0028 undone: feedback is held only by its columns' checks and check_order_customer again
-- (no row was changed by 0028, so none is by its undoing).

DROP TRIGGER feedback_rules ON app.feedback;
DROP FUNCTION app.feedback_rules();
