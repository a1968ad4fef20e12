-- The prediction log records each distinct prediction served to a principal once, not each
-- read of it (finding 4 of the hostile probe: a page of 500 customers' expectedOrderValue,
-- read in a loop by one service key, wrote 500 rows a request, ~64 GB a day on 2 cores).
--
-- features_hash: a 16-byte BLAKE2b digest of the model's input row (ml/batch.py digests:
-- the numeric features as float32, then each category's length and UTF-8 bytes, in the
-- model's feature order). The unique index makes a row once per (model, version, entity,
-- entity id, principal, input): re-reads of the same prediction add nothing (the writer
-- inserts with ON CONFLICT DO NOTHING), a new version, changed features or a new what-if
-- input add a row. The principal is indexed by md5 (a long JWT subject still fits a btree
-- tuple). Rows written before this revision have no hash and stay as they were (the
-- retention removes them); a what-if has no entity id, so NULLs are equal in the key.

ALTER TABLE ml.prediction_log
    ADD COLUMN features_hash bytea CHECK (octet_length(features_hash) = 16);

CREATE UNIQUE INDEX prediction_log_served_once ON ml.prediction_log
    (model, model_version, entity, entity_id, md5(actor), features_hash) NULLS NOT DISTINCT
    WHERE features_hash IS NOT NULL;

COMMENT ON COLUMN ml.prediction_log.features_hash IS
    'BLAKE2b (16 bytes) of the input row the model scored (ml.batch.digests); NULL: a row '
    'written before 0026. A row is unique by model, version, entity, entity_id, actor and it.';
COMMENT ON TABLE ml.prediction_log IS
    'Grain: one row per distinct prediction served to a principal (model version, object or '
    'what-if input, actor); re-reads add nothing. model/model_version: the version that made '
    'it; entity_id: the order, ticket or customer id (NULL for a what-if query); label and '
    'probability (classifiers) or value (regressors); actor: the principal that asked '
    '(cdms.actor); requested_at: when it was first served to that principal; features_hash: '
    'its input row''s digest.';
