-- 0037: the shop's note on a return decision has a column of its own; the customer's
-- comment is never rewritten by the shop (probe 22, finding M1).
--
-- app.reject_return (0003) did `comment = coalesce(p_comment, comment)`: a service or admin
-- key's rejectReturn(comment:) wrote the staff's note over what the customer wrote when it
-- asked (app.request_return), and the customer then read the note through
-- `returns { comment }` ("INTERNAL: flagged for fraud review (agent ...)") while its own
-- words were gone, with no history kept.
--
-- Now:
--   * app.returns.decision_comment holds the note (at most 10,000 characters, as comment:
--     0019); the API serves it as Return.decisionComment to staff roles only (the catalog's
--     roles, as OrderStatusChange.changedBy): a customer asking for it is refused.
--   * app.reject_return(bigint, text) keeps its signature (the previous version, still
--     serving during a rolling upgrade, calls it as before) and writes p_comment there. A
--     note too long is refused naming the argument (`comment`), not the column.
--   * app.approve_return takes no note and writes no comment: unchanged.
--   * cdms_api (admin, analyst, service) may UPDATE only the columns a decision writes:
--     status, refund_amount, decided_at, decided_by, decision_comment. So no statement of
--     the shop's roles, a mutation's or one no mutation makes, rewrites the customer's
--     comment (nor the reason, quantity, line or requester). The BEFORE triggers' own
--     changes (updated_at, customer_id) are not checked against column privileges; the row
--     lock app.lock_return takes needs an UPDATE privilege on some column, which it keeps.
--
-- Existing rows are left as they are: a rejected return whose comment the shop overwrote
-- cannot be told from one where the customer's comment was kept (a rejection without a
-- note kept it; nothing recorded which happened), and the customer's text is gone. Moving
-- those comments to decision_comment would hide customers' own words from them; they stay
-- in comment, readable by the customer as they have been (docs/security.md).
--
-- Locks: ALTER TABLE app.returns (ACCESS EXCLUSIVE; a nullable column with no default and
-- a CHECK all its rows pass: the catalogue, then one scan of app.returns to validate it);
-- the function and the grants lock no app table.

ALTER TABLE app.returns
    ADD COLUMN decision_comment text
        CONSTRAINT returns_decision_comment_check CHECK (length(decision_comment) <= 10000);
COMMENT ON COLUMN app.returns.decision_comment IS
    'The shop''s note on its decision (rejectReturn(comment:)); staff only. comment is the customer''s.';
COMMENT ON COLUMN app.returns.comment IS
    'What the customer wrote when asking for the return; never rewritten by the shop.';

REVOKE UPDATE ON app.returns FROM cdms_api;
GRANT UPDATE (status, refund_amount, decided_at, decided_by, decision_comment) ON app.returns
    TO cdms_api;

-- Rejecting keeps the customer's comment; the shop's note goes to decision_comment.
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
    IF length(p_comment) > 10000 THEN
        PERFORM app.raise_error('CD004',
            format('a comment holds at most 10,000 characters, got %s', length(p_comment)),
            jsonb_build_object('field', 'comment', 'reason', 'too long', 'max', 10000));
    END IF;
    UPDATE app.returns
       SET status = 'rejected',
           decision_comment = p_comment,
           decided_at = now(),
           decided_by = app.current_actor()
     WHERE id = p_return_id
    RETURNING * INTO v_return;
    RETURN v_return;
END
$$;
