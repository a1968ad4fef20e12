-- How many times a customer principal edits its feedback in 24 hours (docs/api.md "Input
-- limits", docs/security.md).
--
-- 0028 bounded new feedback at 20 a day, 0030 orders and tickets: every write a customer
-- key may make was bounded but updateFeedback, which rewrote a feedback's 10,000-character
-- comment as often as the request rate allowed (50 a second in production: tens of GB of
-- WAL a day per key, a dead row each, and each write woke the warehouse pipeline). A
-- customer's token or API key (cdms.role 'customer', editing its own feedback) now edits
-- at most 20 times in a rolling 24 hours, all its feedback together: the 21st is CD007
-- (429 RATE_LIMITED) with the seconds until the next is taken. The shop's keys and the
-- owner are not bound, nor counted.
--
-- An edit leaves no trace in app.feedback (updated_at is the last one's), so the edits are
-- logged in app.feedback_edits: one row per edit a customer principal made, its customer
-- and instant. Only the trigger writes it (SECURITY DEFINER, owned by cdms_owner as the
-- triggers of 0023 are: cdms_owner may read, insert and delete there, and has USAGE on app
-- since 0023); the API roles hold nothing on it, so a customer can neither read the log nor
-- clear its own. The trigger drops the customer's rows that left the window when it logs
-- an edit, so the log holds at most 20 rows a customer. No foreign key: it would lock the
-- customer's row at each edit and app.customers while this migration runs.
--
-- BEFORE UPDATE: a refused edit writes nothing at all (no row version, no WAL). One at a
-- time per customer (a transaction-scoped advisory lock), so concurrent edits of different
-- feedback cannot both pass (concurrent edits of one feedback wait on its row lock anyway).

CREATE TABLE app.feedback_edits (
    customer_id bigint      NOT NULL,
    edited_at   timestamptz NOT NULL
);
CREATE INDEX feedback_edits_customer ON app.feedback_edits (customer_id, edited_at);
COMMENT ON TABLE app.feedback_edits IS
    'The feedback edits of customer principals in the last 24 hours (a few older until the '
    'customer''s next edit): written by app.feedback_edit_limit only (0033).';

ALTER TABLE app.feedback_edits ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.feedback_edits FORCE ROW LEVEL SECURITY;
CREATE POLICY owner_all ON app.feedback_edits TO cdms_owner USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, DELETE ON app.feedback_edits TO cdms_owner;

-- every name in it schema-qualified (app.*, pg_catalog's functions): nothing a caller puts
-- first on its search_path can stand in for one
CREATE FUNCTION app.feedback_edit_limit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c_daily  CONSTANT integer := 20;  -- edits a customer makes in 24 hours
    c_window CONSTANT interval := interval '24 hours';
    v_recent integer;
    v_oldest timestamptz;
BEGIN
    -- another customer's feedback: row-level security never lets the customer reach it
    IF app.sec_role() IS DISTINCT FROM 'customer'
       OR OLD.customer_id IS DISTINCT FROM app.sec_customer() THEN
        RETURN NEW;
    END IF;
    PERFORM pg_catalog.pg_advisory_xact_lock(
        pg_catalog.hashtextextended('cdms:feedback-edits:' || OLD.customer_id, 0));
    SELECT count(*) INTO v_recent FROM app.feedback_edits
     WHERE customer_id = OLD.customer_id AND edited_at > now() - c_window;
    IF v_recent >= c_daily THEN
        -- the next one is taken when the c_daily-th newest leaves the window
        SELECT edited_at INTO v_oldest FROM app.feedback_edits
         WHERE customer_id = OLD.customer_id AND edited_at > now() - c_window
         ORDER BY edited_at DESC OFFSET c_daily - 1 LIMIT 1;
        PERFORM app.raise_error('CD007',
            format('a customer edits its feedback at most %s times in 24 hours; try again later',
                   c_daily),
            jsonb_build_object('field', 'id', 'reason', 'daily limit', 'max', c_daily,
                               'id', OLD.id,
                               'retry_after', greatest(1, ceil(extract(epoch FROM
                                   v_oldest + c_window - now())))::integer));
    END IF;
    DELETE FROM app.feedback_edits
     WHERE customer_id = OLD.customer_id AND edited_at <= now() - c_window;
    INSERT INTO app.feedback_edits (customer_id, edited_at) VALUES (OLD.customer_id, now());
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION app.feedback_edit_limit() IS
    'A customer principal edits its feedback at most 20 times in 24 hours (0033; logged in '
    'app.feedback_edits).';

-- owned by cdms_owner (see 0023: a non-superuser may give a function only to a role that
-- may create in its schema, granted for the moment)
DO $$
DECLARE
    v_had boolean := has_schema_privilege('cdms_owner', 'app', 'CREATE');
BEGIN
    IF NOT v_had THEN
        GRANT CREATE ON SCHEMA app TO cdms_owner;
    END IF;
    ALTER FUNCTION app.feedback_edit_limit() OWNER TO cdms_owner;
    IF NOT v_had THEN
        REVOKE CREATE ON SCHEMA app FROM cdms_owner;
    END IF;
END
$$;

-- @lock: from here on app tables (db/migrations/sqlfile.py: writers wait only for the rest)

CREATE TRIGGER feedback_edit_limit BEFORE UPDATE ON app.feedback
    FOR EACH ROW EXECUTE FUNCTION app.feedback_edit_limit();
