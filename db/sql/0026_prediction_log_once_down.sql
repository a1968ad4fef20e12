-- 0026 undone: the log is one row per read again, as 0007 made it (the hashes are lost).

DROP INDEX ml.prediction_log_served_once;
ALTER TABLE ml.prediction_log DROP COLUMN features_hash;
COMMENT ON TABLE ml.prediction_log IS
    'Grain: one row per prediction served. model/model_version: the version that made it; '
    'entity_id: the order, ticket or customer id (NULL for a what-if query); label and '
    'probability (classifiers) or value (regressors); actor: the principal that asked '
    '(cdms.actor); requested_at: when the request was served.';
