-- Customer.expectedOrderValue stored beside the churn risk (ml/stored_customers.py).
--
-- A customer's order_value features (ml/sql/customers.sql) share the churn features'
-- cut-off, the start of the current UTC day, so its prediction holds all day as the churn
-- risk's does: the same row (as_of, customer_key) carries both. The read path serves
-- order_value_* while its version is the active one and as_of is today's cut-off; else the
-- value is computed on request, as before (a page of 500 customers cost 0.2-0.5 s of
-- server CPU per read). Both models' columns may be NULL (a model not active, or not
-- scored yet that day). Catalogue only: the columns are NULL for the rows there are.

ALTER TABLE ml.customer_predictions
    ADD COLUMN order_value_version integer CHECK (order_value_version > 0),
    ADD COLUMN order_value_value   float8,
    ADD COLUMN order_value_doc     json,
    ADD CONSTRAINT customer_predictions_order_value_whole
        CHECK (num_nulls(order_value_version, order_value_value, order_value_doc) IN (0, 3));

COMMENT ON TABLE ml.customer_predictions IS
    'Grain: one row per customer (current dw.dim_customer version customer_key). churn_risk_*, '
    'order_value_*: its churn_risk and order_value (Customer.expectedOrderValue) predictions '
    'as of as_of (the start of a UTC day), as ml.order_predictions; each served while its '
    'version is active and as_of is the start of the current UTC day.';

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
    FROM ml.customer_predictions WHERE churn_risk_version IS NOT NULL
    UNION ALL
    SELECT 'customer', customer_id, 'order_value', order_value_version, NULL, NULL, NULL,
           order_value_value, order_value_doc, scored_at
    FROM ml.customer_predictions WHERE order_value_version IS NOT NULL;
