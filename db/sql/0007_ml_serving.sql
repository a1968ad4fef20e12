-- Serving of predictions (issue 6): feature tables read by id, and the prediction log.
--
-- Features are "as of the event time" (ml/sql/orders.sql, tickets.sql: no look-ahead), so
-- the features of an order or ticket are fixed once it is in the warehouse. The ETL
-- computes them once, with the very SQL training uses, for every fact that has none yet
-- (a step after the facts; a full load refills them), and the API reads them by primary
-- key instead of running the feature query per request. Rows go with their fact (ON DELETE
-- CASCADE); the full load truncates them with the facts. Column names and types are the
-- feature query's (numerics float8, categories text); ml/feature_table.py checks that they
-- match the model specs.

CREATE TABLE ml.order_features (
    order_id           bigint      PRIMARY KEY
                                   REFERENCES dw.fact_orders (order_id) ON DELETE CASCADE,
    event_at           timestamptz NOT NULL,
    segment            text,
    age_band           text,
    country            text,
    tenure_days        float8,
    prior_orders       float8,
    prior_cancel_rate  float8,
    prior_return_rate  float8,
    prior_avg_value    float8,
    channel            text,
    payment_method     text,
    item_count         float8,
    line_count         float8,
    basket_value       float8,
    discount_rate      float8,
    main_category      text,
    category_count     float8,
    day_of_week        float8,
    month              float8,
    computed_at        timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ml.order_features IS
    'Grain: one row per dw.fact_orders row. The features of ml/sql/orders.sql as of the '
    'order''s placing (event_at = ordered_at), written by the ETL step ml_features; '
    'served to order_status and order_value.';

CREATE TABLE ml.ticket_features (
    ticket_id            bigint      PRIMARY KEY
                                     REFERENCES dw.fact_support (ticket_id) ON DELETE CASCADE,
    event_at             timestamptz NOT NULL,
    category             text,
    priority             text,
    channel              text,
    segment              text,
    tenure_days          float8,
    prior_orders         float8,
    prior_tickets        float8,
    prior_resolved_rate  float8,
    order_value          float8,
    computed_at          timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ml.ticket_features IS
    'Grain: one row per dw.fact_support row. The features of ml/sql/tickets.sql as of the '
    'ticket''s opening (event_at = opened_at), written by the ETL step ml_features; served '
    'to support_status.';

-- One row per prediction served (a prediction field of an object, or a what-if query).
-- Written in batches by a background thread of the API process (ml/prediction_log.py),
-- never inside a request's read transaction. Append-only.
CREATE TABLE ml.prediction_log (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model          text        NOT NULL,
    model_version  integer     NOT NULL,
    entity         text        NOT NULL CHECK (entity IN ('order', 'ticket', 'customer',
                                                          'what_if')),
    entity_id      bigint,
    label          text,
    probability    float8      CHECK (probability BETWEEN 0 AND 1),
    value          float8,
    actor          text        NOT NULL,
    requested_at   timestamptz NOT NULL,
    CHECK ((entity = 'what_if') = (entity_id IS NULL)),
    CHECK ((label IS NULL) = (probability IS NULL)),
    CHECK ((label IS NULL) <> (value IS NULL))
);
COMMENT ON TABLE ml.prediction_log IS
    'Grain: one row per prediction served. model/model_version: the version that made it; '
    'entity_id: the order, ticket or customer id (NULL for a what-if query); label and '
    'probability (classifiers) or value (regressors); actor: the principal that asked '
    '(cdms.actor); requested_at: when the request was served.';
CREATE INDEX prediction_log_model_time ON ml.prediction_log (model, requested_at);
CREATE INDEX prediction_log_entity ON ml.prediction_log (entity, entity_id)
    WHERE entity_id IS NOT NULL;

GRANT SELECT ON ml.order_features, ml.ticket_features, ml.prediction_log TO cdms_api;
