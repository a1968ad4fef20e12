-- 0038: the free text that had to be "not blank" holds at least one visible character.
--
-- A ticket's subject had to be "not blank", length(btrim(subject)) > 0, and btrim trims
-- only U+0020: a customer opened tickets whose subject was "\t", "\n\n", U+00A0, U+200B
-- (zero-width space), U+3000 or U+202E alone, which every list shows as empty (hostile
-- probe 22, L2; with 20 tickets a day, a queue of empty-looking tickets). A customer's
-- first and last name and a product's name had the same rule (0002, 0019) and the same gap.
-- The other required text, a customer's country, region and city and a product's category,
-- subcategory and brand, never had a not-blank rule and is left alone: "" is a value there
-- (a country without regions, unbranded goods; hostile probe 23, L2).
--
-- app.has_visible(text) says whether a text holds a character outside the invisible
-- ones, which are:
--   the controls (Cc: U+0001-U+001F, U+007F-U+009F);
--   every White_Space character (U+0009-U+000D, U+0020, U+0085, U+00A0, U+1680,
--   U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000);
--   every Default_Ignorable_Code_Point (Unicode 15.1, DerivedCoreProperties.txt: U+00AD,
--   U+034F, U+061C, U+115F-U+1160, U+17B4-U+17B5, U+180B-U+180F, U+200B-U+200F,
--   U+202A-U+202E, U+2060-U+206F, U+3164, U+FE00-U+FE0F, U+FEFF, U+FFA0, U+FFF0-U+FFF8,
--   U+1BCA0-U+1BCA3, U+1D173-U+1D17A, U+E0000-U+E0FFF), which a renderer draws as
--   nothing when it has no glyph for them: ZWNJ/ZWJ, the bidi controls, the Hangul
--   fillers, the variation selectors, the tags, and the code points reserved for more
--   of them (U+FFF0-U+FFF8, U+E0080-U+E0FFF: a later Unicode's characters there draw
--   nothing either);
--   and a few that draw nothing on their own though outside the property: U+2800
--   (braille blank), U+FFF9-U+FFFB (interlinear annotation), U+13430-U+1343F (Egyptian
--   hieroglyph format controls), U+16FE4 (Khitan filler).
-- So emoji and their ZWJ sequences, a tag flag, Persian with a ZWNJ, any script, a
-- combining mark (on a base or alone) are visible. 0038's first list missed
-- U+1D173-U+1D17A, U+1BCA0-U+1BCA3, U+FFF0-U+FFF8 and most of U+E0080-U+E0FFF (hostile
-- probe 23, L1); tests/db/test_visible_text.py checks each code point of the three sets.
-- The set is written out, not [[:graph:]]: PostgreSQL's character classes follow the
-- database's locale (under C, every letter past ASCII is "not graph"), and a CHECK must
-- mean the same on every server. Text with one visible character anywhere is taken as
-- written (no trimming, no rewriting).
--
-- The four columns' CHECKs (one per column, named <table>_<column>_check, so a refusal
-- names the API's field: db/errors.py) become app.has_visible(x) AND length(x) <= 200.
-- app.raise_bad_column (0020) tells such a value as blank ("subject must not be blank",
-- reason 'blank') where it only knew spaces; its body is otherwise 0020's.
--
-- Rows that already hold no visible character do not stop the upgrade and are not left
-- behind a NOT VALID constraint (which would refuse every later update of such a row,
-- a ticket's status change included): their value becomes "(blank)", so each CHECK is
-- validated. What they held drew nothing; updated_at moves, so the pipeline carries the
-- new value to the warehouse. The downgrade does not put the old values back.
--
-- Locks (hostile probe 23, L3). ALTER TABLE ... ADD CONSTRAINT takes ACCESS EXCLUSIVE,
-- which every reader waits for (every order read joins customers), and a revision's locks
-- last until its transaction commits (db/migrations/env.py: one transaction per revision).
-- A validated ADD CONSTRAINT scans the table under it, and 0038's first version also
-- rewrote the rows there: ~0.7 s per 100,000 customers of blocked reads. So 0038 is two
-- transactions (db/migrations/versions/0038_visible_text.py):
--   1. this file: the functions (no app table), then, from the lock marker on, the four
--      CHECKs made NOT VALID: ACCESS EXCLUSIVE on customers, products, support_tickets,
--      taken up front in the readers' order under a 200 ms lock_timeout
--      (db/migrations/sqlfile.py), held for a catalogue change only (milliseconds, no
--      scan), then committed. From here on every write is held to the rule;
--   2. 0038_visible_text_rows.sql, with the revision's stamp: the rewrite (ROW EXCLUSIVE,
--      as any writer: reads and writes go on; it waits only for a writer holding one of
--      the rows it rewrites) and VALIDATE CONSTRAINT (SHARE UPDATE EXCLUSIVE: reads and
--      writes go on), the scans made there.
-- Between the two, an update of a row still without a visible character is refused (its
-- value must get one): for the length of step 2's scans. Stopped between them, the
-- database is at 0037 with step 1 made; every statement of this file may run again, so
-- the next upgrade finishes (tests/db/test_migrations.py).
--
-- Undone by 0038_visible_text_down.sql (and 0038_visible_text_down_rows.sql).

CREATE OR REPLACE FUNCTION app.has_visible(p_text text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT p_text ~ ('[^\u0001-\u0020\u007f-\u00a0\u00ad\u034f\u061c\u115f\u1160\u1680'
                     '\u17b4\u17b5\u180b-\u180f\u2000-\u200f\u2028-\u202f\u205f-\u206f'
                     '\u2800\u3000\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb'
                     '\U00013430-\U0001343f\U00016fe4\U0001bca0-\U0001bca3'
                     '\U0001d173-\U0001d17a\U000e0000-\U000e0fff]')
$$;
COMMENT ON FUNCTION app.has_visible(text) IS
    'Whether a text holds a visible character: one that is not a control (Cc), White_Space '
    'or Default_Ignorable_Code_Point (U+200B, U+202E, U+FEFF, U+E0000-U+E0FFF...) (0038).';

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
    ELSIF NOT app.has_visible(v_value) THEN  -- spaces, tabs, U+200B, U+3000... only
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
        CHECK (app.has_visible(first_name) AND length(first_name) <= 200) NOT VALID,
    DROP CONSTRAINT customers_last_name_check,
    ADD CONSTRAINT customers_last_name_check
        CHECK (app.has_visible(last_name) AND length(last_name) <= 200) NOT VALID;

ALTER TABLE app.products
    DROP CONSTRAINT products_name_check,
    ADD CONSTRAINT products_name_check
        CHECK (app.has_visible(name) AND length(name) <= 200) NOT VALID;

ALTER TABLE app.support_tickets
    DROP CONSTRAINT support_tickets_subject_check,
    ADD CONSTRAINT support_tickets_subject_check
        CHECK (app.has_visible(subject) AND length(subject) <= 200) NOT VALID;
