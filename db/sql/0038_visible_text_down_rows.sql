-- 0038 undone, step 2 (after 0038_visible_text_down.sql has committed 0019's CHECKs NOT
-- VALID): each is validated (SHARE UPDATE EXCLUSIVE: reads and writes go on), and
-- app.has_visible, which no CHECK calls any more, is dropped. Committed with the revision's
-- stamp.

ALTER TABLE app.products VALIDATE CONSTRAINT products_name_check;
ALTER TABLE app.customers VALIDATE CONSTRAINT customers_first_name_check;
ALTER TABLE app.customers VALIDATE CONSTRAINT customers_last_name_check;
ALTER TABLE app.support_tickets VALIDATE CONSTRAINT support_tickets_subject_check;

DROP FUNCTION app.has_visible(text);
