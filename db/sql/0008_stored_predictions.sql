-- Stored predictions (issue 6): every order and ticket scored once per active model version,
-- so a query that selects predictedStatus/predictedTotal reads them in its one statement
-- (schema/compiled/sql.py joins them by primary key) instead of running the models per
-- request.
--
-- Written by ml/stored.py: after each ETL run for the objects it added features for, after
-- a model is activated for every object (cdms ml train / activate / score). A row serves
-- only while its version is the model's active one (the join compares versions); an
-- object with no current row is scored on request, as before, by the same ONNX sessions.
-- A full load truncates them with the feature tables they derive from.
--
-- One row per object, a group of columns per model (<model>_version, _label,
-- _probability, _probabilities, _doc for a classifier; _version, _value, _doc for the
-- regressor): a page joins ONE row per object whatever the prediction fields it selects
-- (a row per object and model cost a second index probe per object: +0.6 ms on a 500-order
-- page). _doc is the prediction exactly as the API serializes its usual selection
-- ({"label","probability"} or {"value"}), _probabilities the classifier's
-- [{"label","probability"}, ...] in the model's class order: PostgreSQL embeds them as they
-- are; other selections are built from the columns. A model's columns are all set or all
-- NULL (not scored by it yet).

CREATE TABLE ml.order_predictions (
    order_id                    bigint      PRIMARY KEY,
    order_status_version        integer     CHECK (order_status_version > 0),
    order_status_label          text,
    order_status_probability    float8      CHECK (order_status_probability BETWEEN 0 AND 1),
    order_status_probabilities  json,
    order_status_doc            json,
    order_value_version         integer     CHECK (order_value_version > 0),
    order_value_value           float8,
    order_value_doc             json,
    scored_at                   timestamptz NOT NULL DEFAULT now(),
    CHECK (num_nulls(order_status_version, order_status_label, order_status_probability,
                     order_status_probabilities, order_status_doc) IN (0, 5)),
    CHECK (num_nulls(order_value_version, order_value_value, order_value_doc) IN (0, 3))
);
COMMENT ON TABLE ml.order_predictions IS
    'Grain: one row per order (ml.order_features row). order_status_*, order_value_*: its '
    'prediction by that model; *_version: the version that made it (served only while '
    'active); *_doc: the prediction as the API serializes {label probability} or {value}.';

CREATE TABLE ml.ticket_predictions (
    ticket_id                     bigint      PRIMARY KEY,
    support_status_version        integer     CHECK (support_status_version > 0),
    support_status_label          text,
    support_status_probability    float8      CHECK (support_status_probability BETWEEN 0 AND 1),
    support_status_probabilities  json,
    support_status_doc            json,
    scored_at                     timestamptz NOT NULL DEFAULT now(),
    CHECK (num_nulls(support_status_version, support_status_label, support_status_probability,
                     support_status_probabilities, support_status_doc) IN (0, 5))
);
COMMENT ON TABLE ml.ticket_predictions IS
    'Grain: one row per support ticket (ml.ticket_features row); support_status_* as '
    'ml.order_predictions.';

GRANT SELECT ON ml.order_predictions, ml.ticket_predictions TO cdms_api;

-- The same, one row per object and model (for SQL users and audits; the API reads the tables).
CREATE VIEW ml.stored_predictions AS
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
    FROM ml.ticket_predictions WHERE support_status_version IS NOT NULL;
COMMENT ON VIEW ml.stored_predictions IS
    'Grain: one row per stored prediction (object x model) of ml.order_predictions and '
    'ml.ticket_predictions; kind: order or ticket; id: the order or ticket id.';

GRANT SELECT ON ml.stored_predictions TO cdms_api;
