-- 0013: when the stored predictions are known complete, so that a restart need not count.
--
-- cdms serve's start-up scores what has no stored prediction by the active versions
-- (ml.stored.refresh). Finding out costs a join of every feature row with its stored row:
-- seconds at a million orders, on every restart. A full refresh that finishes records here
-- the versions it scored by; a restart that finds the same versions active, and the
-- pipeline's scoring step caught up with its features step (dw.etl_applied: every
-- feature change since was scored), knows there is nothing to score (ml.stored.current).
--
-- Safe while the previous version serves: a new table and a trigger on ml tables only.

CREATE TABLE ml.stored_state (
    stored_table  text        PRIMARY KEY
                              CHECK (stored_table IN ('ml.order_predictions',
                                                      'ml.ticket_predictions')),
    versions      jsonb       NOT NULL CHECK (jsonb_typeof(versions) = 'object'),
    completed_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ml.stored_state IS
    'Per stored-predictions table: the model versions ({"model": version}) a full refresh '
    'last scored every feature row by, and when it finished. Emptied for a table that is '
    'truncated (a full load); rows deleted otherwise (ml.stored.forget) are re-scored by the '
    'pipeline''s scoring step, which dw.etl_applied tracks.';

-- a truncated table (a full load, a reset) is no longer complete
CREATE FUNCTION ml.stored_state_forget() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM ml.stored_state WHERE stored_table = TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME;
    RETURN NULL;
END;
$$;
CREATE TRIGGER stored_state_forget AFTER TRUNCATE ON ml.order_predictions
    FOR EACH STATEMENT EXECUTE FUNCTION ml.stored_state_forget();
CREATE TRIGGER stored_state_forget AFTER TRUNCATE ON ml.ticket_predictions
    FOR EACH STATEMENT EXECUTE FUNCTION ml.stored_state_forget();
