-- 0038, step 2 (after 0038_visible_text.sql has committed its CHECKs NOT VALID): the rows
-- without a visible character read "(blank)", then each CHECK is validated. No ACCESS
-- EXCLUSIVE lock: the UPDATEs take ROW EXCLUSIVE, VALIDATE CONSTRAINT SHARE UPDATE
-- EXCLUSIVE; neither holds a reader or a writer (a writer of a row being rewritten waits
-- for the revision's commit). The tables in the writers' order (products before customers:
-- db/migrations/sqlfile.py, WRITE_ORDER), each rewritten then validated. Committed with
-- the revision's stamp; runs again as it is.

UPDATE app.products SET name = '(blank)' WHERE NOT app.has_visible(name);
ALTER TABLE app.products VALIDATE CONSTRAINT products_name_check;

UPDATE app.customers
   SET first_name = CASE WHEN app.has_visible(first_name) THEN first_name ELSE '(blank)' END,
       last_name  = CASE WHEN app.has_visible(last_name)  THEN last_name  ELSE '(blank)' END
 WHERE NOT (app.has_visible(first_name) AND app.has_visible(last_name));
ALTER TABLE app.customers VALIDATE CONSTRAINT customers_first_name_check;
ALTER TABLE app.customers VALIDATE CONSTRAINT customers_last_name_check;

UPDATE app.support_tickets SET subject = '(blank)' WHERE NOT app.has_visible(subject);
ALTER TABLE app.support_tickets VALIDATE CONSTRAINT support_tickets_subject_check;
