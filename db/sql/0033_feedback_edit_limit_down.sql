-- 0033 undone: customers' feedback edits are bounded by the request rate alone, and the
-- edit log is gone (the log only: no feedback row was changed by 0033).

-- @lock: from here on app tables (db/migrations/sqlfile.py)

DROP TRIGGER feedback_edit_limit ON app.feedback;
DROP FUNCTION app.feedback_edit_limit();
DROP TABLE app.feedback_edits;
