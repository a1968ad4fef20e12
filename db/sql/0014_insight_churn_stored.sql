-- Stored churn_risk predictions, one row per customer (ml/stored_customers.py).
--
-- A customer's churn features are as of a cut-off, the start of the current UTC day
-- (ml/sql/customers.sql), so a prediction holds for the day it was made: as_of is that
-- cut-off, customer_key the dim_customer version the features read. The read path
-- (schema/sql.py) serves a row while its version is the active one and as_of is today's
-- cut-off; else the prediction is computed on request, as before. The pipeline's scoring
-- step refreshes the rows (and forgets those of customers a load touched), as it does for
-- ml.order_predictions.

CREATE TABLE ml.customer_predictions (
    customer_id                 bigint      PRIMARY KEY,
    as_of                       timestamptz NOT NULL,
    customer_key                bigint      NOT NULL,
    churn_risk_version          integer     CHECK (churn_risk_version > 0),
    churn_risk_label            text,
    churn_risk_probability      float8      CHECK (churn_risk_probability BETWEEN 0 AND 1),
    churn_risk_probabilities    json,
    churn_risk_doc              json,
    scored_at                   timestamptz NOT NULL DEFAULT now(),
    CHECK (num_nulls(churn_risk_version, churn_risk_label, churn_risk_probability,
                     churn_risk_probabilities, churn_risk_doc) IN (0, 5))
);
COMMENT ON TABLE ml.customer_predictions IS
    'Grain: one row per customer (current dw.dim_customer version customer_key). churn_risk_*: '
    'its churn_risk prediction as of as_of (the start of a UTC day), as ml.order_predictions; '
    'served while the version is active and as_of is the start of the current UTC day.';

GRANT SELECT ON ml.customer_predictions TO cdms_api;

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
COMMENT ON VIEW ml.stored_predictions IS
    'Grain: one row per stored prediction (object x model) of ml.order_predictions, '
    'ml.ticket_predictions and ml.customer_predictions; kind: order, ticket or customer; '
    'id: the order, ticket or customer id.';
