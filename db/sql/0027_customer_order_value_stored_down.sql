-- 0027 undone: ml.customer_predictions holds churn risks only, as 0014 made it (the stored
-- expected order values are lost: they are computed on request again).

CREATE OR REPLACE VIEW ml.stored_predictions AS
    SELECT 'order'::text AS kind, order_id AS id, 'order_status'::text AS model,
           order_status_version AS version, order_status_label AS label,
           order_status_probability AS probability,
           order_status_probabilities AS probabilities, NULL::float8 AS value,
           order_status_doc AS doc, scored_at
    FROM ml.order_predictions WHERE order_status_version IS NOT NULL
    UNION ALL
    SELECT 'order', order_id, 'order_value', order_value_version, NULL, NULL, NULL,
           order_value_value, order_value_doc, scored_at
    FROM ml.order_predictions WHERE order_value_version IS NOT NULL
    UNION ALL
    SELECT 'ticket', ticket_id, 'support_status', support_status_version, support_status_label,
           support_status_probability, support_status_probabilities, NULL,
           support_status_doc, scored_at
    FROM ml.ticket_predictions WHERE support_status_version IS NOT NULL
    UNION ALL
    SELECT 'customer', customer_id, 'churn_risk', churn_risk_version, churn_risk_label,
           churn_risk_probability, churn_risk_probabilities, NULL, churn_risk_doc, scored_at
    FROM ml.customer_predictions WHERE churn_risk_version IS NOT NULL;

-- a row scored only by order_value holds no prediction any more
DELETE FROM ml.customer_predictions WHERE churn_risk_version IS NULL;
ALTER TABLE ml.customer_predictions
    DROP COLUMN order_value_version,
    DROP COLUMN order_value_value,
    DROP COLUMN order_value_doc;

COMMENT ON TABLE ml.customer_predictions IS
    'Grain: one row per customer (current dw.dim_customer version customer_key). churn_risk_*: '
    'its churn_risk prediction as of as_of (the start of a UTC day), as ml.order_predictions; '
    'served while the version is active and as_of is the start of the current UTC day.';
