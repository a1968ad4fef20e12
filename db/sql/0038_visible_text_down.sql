-- 0038 undone: the four columns' CHECKs as 0019 made them (a first or last name, a
-- product's name and a ticket's subject "not blank" by btrim), app.raise_bad_column as
-- 0020 made it, app.has_visible dropped. Values 0038 rewrote to "(blank)" stay as they are.
--
-- Locks: as the upgrade, two transactions. Here the CHECKs are made NOT VALID (ACCESS
-- EXCLUSIVE on customers, products, support_tickets for a catalogue change only) and
-- committed; 0038_visible_text_down_rows.sql validates them (SHARE UPDATE EXCLUSIVE: every
-- row 0038 let in has a visible character, so is not blank by btrim) and drops
-- app.has_visible, with the revision's stamp. Every statement here may run again.

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

-- @lock: from here on app tables (db/migrations/sqlfile.py: writers wait only for the rest)
ALTER TABLE app.customers
    DROP CONSTRAINT customers_first_name_check,
    ADD CONSTRAINT customers_first_name_check
        CHECK (length(btrim(first_name)) > 0 AND length(first_name) <= 200) NOT VALID,
    DROP CONSTRAINT customers_last_name_check,
    ADD CONSTRAINT customers_last_name_check
        CHECK (length(btrim(last_name)) > 0 AND length(last_name) <= 200) NOT VALID;

ALTER TABLE app.products
    DROP CONSTRAINT products_name_check,
    ADD CONSTRAINT products_name_check
        CHECK (length(btrim(name)) > 0 AND length(name) <= 200) NOT VALID;

ALTER TABLE app.support_tickets
    DROP CONSTRAINT support_tickets_subject_check,
    ADD CONSTRAINT support_tickets_subject_check
        CHECK (length(btrim(subject)) > 0 AND length(subject) <= 200) NOT VALID;
