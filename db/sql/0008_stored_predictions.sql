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
-- doc is the prediction exactly as the API serializes its usual selection
-- ({"label","probability"} for a classifier, {"value"} for the regressor), and
-- probabilities the classifier's [{"label","probability"}, ...] in the model's class order:
-- PostgreSQL embeds them as they are; other selections are built from the columns.

CREATE TABLE ml.order_predictions (
    order_id       bigint      NOT NULL,
    model          text        NOT NULL,
    version        integer     NOT NULL CHECK (version > 0),
    label          text,
    probability    float8      CHECK (probability BETWEEN 0 AND 1),
    probabilities  json,
    value          float8,
    doc            json        NOT NULL,
    scored_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, model),
    CHECK ((label IS NULL) = (probability IS NULL)),
    CHECK ((label IS NULL) = (probabilities IS NULL)),
    CHECK ((label IS NULL) <> (value IS NULL))
);
COMMENT ON TABLE ml.order_predictions IS
    'Grain: one row per order (ml.order_features row) and model (order_status, '
    'order_value). version: the model version that scored it (served only while active); '
    'doc: the prediction as the API serializes {label probability} or {value}.';

CREATE TABLE ml.ticket_predictions (
    ticket_id      bigint      NOT NULL,
    model          text        NOT NULL,
    version        integer     NOT NULL CHECK (version > 0),
    label          text,
    probability    float8      CHECK (probability BETWEEN 0 AND 1),
    probabilities  json,
    value          float8,
    doc            json        NOT NULL,
    scored_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ticket_id, model),
    CHECK ((label IS NULL) = (probability IS NULL)),
    CHECK ((label IS NULL) = (probabilities IS NULL)),
    CHECK ((label IS NULL) <> (value IS NULL))
);
COMMENT ON TABLE ml.ticket_predictions IS
    'Grain: one row per support ticket (ml.ticket_features row) and model (support_status). '
    'As ml.order_predictions.';

GRANT SELECT ON ml.order_predictions, ml.ticket_predictions TO cdms_api;
