-- 0019: every free-text column a client writes has a length limit.
--
-- Without one a customer could store a megabyte (the request body limit) in each feedback
-- comment or ticket subject, as often as the rate limit allows, and the warehouse, the
-- features and the BI views would carry it. The limits are generous (a name of 200
-- characters, a comment of 10,000) and count characters, not bytes. Each rule is the
-- column's one CHECK, named <table>_<column>_check, so a refusal names the API's field
-- (db/errors.py: BAD_USER_INPUT, "invalid comment", field "comment"); the columns that
-- had a rule (not blank, an e-mail's form) keep it in the same constraint. Existing rows
-- are validated: a longer value stops the upgrade, naming the constraint, rather than
-- making every later update of its row fail.

-- @lock: from here on app tables (db/migrations/sqlfile.py: writers wait only for the rest)
ALTER TABLE app.customers
    DROP CONSTRAINT customers_email_check,
    ADD CONSTRAINT customers_email_check
        CHECK (email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' AND length(email) <= 254),
    DROP CONSTRAINT customers_first_name_check,
    ADD CONSTRAINT customers_first_name_check
        CHECK (length(btrim(first_name)) > 0 AND length(first_name) <= 200),
    DROP CONSTRAINT customers_last_name_check,
    ADD CONSTRAINT customers_last_name_check
        CHECK (length(btrim(last_name)) > 0 AND length(last_name) <= 200),
    ADD CONSTRAINT customers_country_check CHECK (length(country) <= 200),
    ADD CONSTRAINT customers_region_check CHECK (length(region) <= 200),
    ADD CONSTRAINT customers_city_check CHECK (length(city) <= 200);

ALTER TABLE app.products
    DROP CONSTRAINT products_name_check,
    ADD CONSTRAINT products_name_check
        CHECK (length(btrim(name)) > 0 AND length(name) <= 200),
    ADD CONSTRAINT products_category_check CHECK (length(category) <= 200),
    ADD CONSTRAINT products_subcategory_check CHECK (length(subcategory) <= 200),
    ADD CONSTRAINT products_brand_check CHECK (length(brand) <= 200);

ALTER TABLE app.feedback
    ADD CONSTRAINT feedback_comment_check CHECK (length(comment) <= 10000);

ALTER TABLE app.returns
    ADD CONSTRAINT returns_comment_check CHECK (length(comment) <= 10000);

ALTER TABLE app.support_tickets
    DROP CONSTRAINT support_tickets_subject_check,
    ADD CONSTRAINT support_tickets_subject_check
        CHECK (length(btrim(subject)) > 0 AND length(subject) <= 200);
