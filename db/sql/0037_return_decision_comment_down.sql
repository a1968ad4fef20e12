-- 0037 undone: app.reject_return writes its note over the customer's comment again (as 0003
-- made it), cdms_api may UPDATE every column of app.returns (0006), and decision_comment is
-- dropped with the notes it holds (they are not copied into comment: that would show staff
-- notes to customers). The column comments go back to none.
--
-- Locks: ALTER TABLE app.returns (ACCESS EXCLUSIVE, the catalogue only).

CREATE OR REPLACE FUNCTION app.reject_return(p_return_id bigint, p_comment text DEFAULT NULL)
RETURNS app.returns
LANGUAGE plpgsql
AS $$
DECLARE
    v_return app.returns := app.lock_return(p_return_id);
BEGIN
    IF v_return.status <> 'requested' THEN
        PERFORM app.raise_error('CD002',
            format('return %s is already %s', p_return_id, v_return.status),
            jsonb_build_object('entity', 'return', 'id', p_return_id,
                               'from', v_return.status, 'to', 'rejected'));
    END IF;
    UPDATE app.returns
       SET status = 'rejected',
           comment = coalesce(p_comment, comment),
           decided_at = now(),
           decided_by = app.current_actor()
     WHERE id = p_return_id
    RETURNING * INTO v_return;
    RETURN v_return;
END
$$;

-- revoking the table privilege revokes the column privileges 0037 granted too
REVOKE UPDATE ON app.returns FROM cdms_api;
GRANT UPDATE ON app.returns TO cdms_api;

COMMENT ON COLUMN app.returns.comment IS NULL;
ALTER TABLE app.returns DROP COLUMN decision_comment;
