-- Delta maintenance of the rollups (semantic/rollup_delta.py).
--
-- An incremental fact step (etl/load.py) records here, in the transaction that changes the
-- facts, each fact row it changed: the row as it was (sign -1) and as it is (sign +1), one
-- JSON object per row with the fact table's columns. A dimension step that re-keys facts
-- to a new SCD2 version records them likewise; one whose type-1 change alters what facts
-- contribute to a rollup (without changing the facts) records a marker (sign 0, no row):
-- the rollups of that fact re-aggregate their touched buckets instead.
--
-- The publish step aggregates the deltas a rollup has not applied (seq > its
-- dw_rollup.build.delta_seq) as the rollup aggregates the facts, adds them to the rollup's
-- rows, and deletes the deltas every rollup has applied; delta_pruned is the highest seq
-- deleted, so that a rollup whose delta_seq is lower (its deltas are gone) is known to
-- lack them. Loads run one at a time (the ETL's advisory lock), so the deltas a snapshot
-- sees are exactly those with seq up to the highest it sees.

CREATE TABLE dw.fact_delta (
    seq         bigserial PRIMARY KEY,
    run_id      bigint    NOT NULL,
    fact_table  text      NOT NULL,
    sign        smallint  NOT NULL CHECK (sign IN (-1, 0, 1)),
    fact        jsonb     CHECK ((sign = 0) = (fact IS NULL))
);
COMMENT ON TABLE dw.fact_delta IS
    'Grain: one changed fact row (sign -1: as it was, +1: as it is; fact: its columns) or a '
    'marker (sign 0: the rollups of fact_table re-aggregate instead), written by the load '
    'step that changed it (run_id), deleted once every rollup has applied it.';

ALTER TABLE dw.etl_state ADD COLUMN delta_pruned bigint NOT NULL DEFAULT 0;
COMMENT ON COLUMN dw.etl_state.delta_pruned IS
    'The highest dw.fact_delta.seq deleted (applied by every rollup).';
