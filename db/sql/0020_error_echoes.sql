-- 0020: what a refusal tells a client about the value it refused.
--
-- app.raise_bad_column (0003) wrote "invalid <field>: <the value>" whole: a ticket subject
-- of 900,000 characters came back in the message and again in the detail's "value" (1.8 MB
-- for one refused request), and an empty subject read "invalid subject:". It now quotes at
-- most 64 characters of a value (app.shown: an ellipsis and the length past them) and says
-- what is wrong with a missing, empty or blank one.
--
-- Only functions are replaced: no app table is locked.

-- A value as an error quotes it: whole up to 64 characters, else its first 64 with an
-- ellipsis and its length ("yyyy… (900,000 characters)"). db.errors.shown is the same rule
-- for the API's own messages.
CREATE FUNCTION app.shown(p_value text) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE
        WHEN length(p_value) <= 64 THEN p_value
        ELSE left(p_value, 64) || '… (' || to_char(length(p_value), 'FM999,999,999,999')
             || ' characters)'
    END
$$;

-- A value as an error's detail carries it: whole up to 64 characters, else its first 64
-- with an ellipsis (the message tells the length).
CREATE FUNCTION app.clipped(p_value jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE
        WHEN p_value IS NULL OR length(p_value #>> '{}') <= 64 THEN p_value
        ELSE to_jsonb(left(p_value #>> '{}', 64) || '…')
    END
$$;

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
