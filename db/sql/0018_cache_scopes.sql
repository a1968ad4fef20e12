-- 0018: what each warehouse version changed, so that a cached cube answer outlives the
-- versions that did not touch what it read.
--
-- The pipeline's publish step bumps dw.etl_state.version and, in the same transaction,
-- records here the tables its runs changed: per fact table the UTC days (date_key) of the
-- facts touched, or null for a table changed as a whole (a dimension, a snapshot, a
-- rebuild); changes null: everything (a full load). A server holding a cube answer of an
-- older version reads the versions since and keeps serving it when none of them touched a
-- table, or a day of a fact table, the answer read (semantic/cache.py). A version without
-- a row here (a full load's own bump, or one pruned) invalidates every answer before it.

CREATE TABLE dw.etl_version (
    version       bigint      PRIMARY KEY,
    run_id        bigint,
    published_at  timestamptz NOT NULL DEFAULT now(),
    changes       jsonb
);
COMMENT ON TABLE dw.etl_version IS
    'Per warehouse version published by the pipeline: changes = {table: [date_key, ...] | '
    'null (the whole table)}, or null for everything. Read by the cube result cache to keep '
    'answers the version did not touch; pruned with the step log (7 days).';

GRANT SELECT ON dw.etl_version TO cdms_api;
