-- Freshness (issue 16): what the change-driven pipeline (etl/pipeline.py) needs.
--
--   1. every change that matters to the warehouse is heard: NOTIFY cdms_dw_change
--   2. lineage: every dw row carries the run that last wrote it (run_id)
--   3. the change log between the load and the steps after it (dw.etl_touched), and how
--      far each of those steps has applied it (dw.etl_applied)
--   4. the warehouse's row definitions over the operational tables (dw.*_source views):
--      the ETL loads from them, online features (ml/online.py) read them for objects not
--      loaded yet - one definition, two readers
--
-- Safe while the previous version serves: new function, triggers, tables and views; the
-- ADD COLUMNs are catalog-only (nullable, no default), each a brief lock on a dw table.
-- The triggers come last (section 5): the app tables are locked only for them.

-- =======================================================================================
-- 1. change notifications
-- =======================================================================================
-- One statement-level trigger per source table of the warehouse. The payload is empty, so
-- a transaction that writes several tables sends one notification (PostgreSQL folds equal
-- notifications of a transaction), delivered when it commits; nothing is sent on rollback.
-- The status triggers of 0003 (cdms_order_status, ...) stay: they describe the change.
CREATE FUNCTION dw.notify_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cdms_dw_change', '');
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION dw.notify_change() IS
    'NOTIFY cdms_dw_change (empty payload) after a statement that wrote a source table of dw.';

-- (the triggers themselves come last, section 5: they lock the app tables)

-- =======================================================================================
-- 2. lineage
-- =======================================================================================
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['dim_customer', 'dim_product', 'fact_sales', 'fact_orders',
                             'fact_returns', 'fact_feedback', 'fact_support', 'fact_stock_daily']
    LOOP
        EXECUTE format('ALTER TABLE dw.%I ADD COLUMN run_id bigint', t);
        EXECUTE format($c$COMMENT ON COLUMN dw.%I.run_id IS
            'Lineage: the dw.etl_run that last inserted or changed this row (NULL: written'
            ' before migration 0011). Not indexed: updates stay HOT.'$c$, t);
    END LOOP;
END
$$;

-- =======================================================================================
-- 3. the change log of the load, for the steps after it
-- =======================================================================================
CREATE TABLE dw.etl_touched (
    run_id    bigint  NOT NULL,
    fact      text    NOT NULL,
    key_id    bigint  NOT NULL,
    date_key  integer NOT NULL,
    PRIMARY KEY (run_id, fact, key_id, date_key)
);
COMMENT ON TABLE dw.etl_touched IS
    'Facts a run inserted, changed, re-keyed or deleted (or whose dimension row changed): '
    'fact = step name, key_id = its first key column (order_id for fact_sales), date_key = '
    'its date before and after the change. Written in the step''s transaction; read by the '
    'steps after the load (rollups: the days to re-aggregate; features: the orders and '
    'tickets to recompute); pruned once every one of them has applied the run.';

CREATE TABLE dw.etl_applied (
    step        text        PRIMARY KEY,
    run_id      bigint      NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE dw.etl_applied IS
    'Per step after the load (rollups, publish, features, scoring): every change logged by '
    'runs up to run_id is applied. Advanced in the step''s own transaction.';

-- =======================================================================================
-- 4. row definitions: one row of each dw table, computed from the app rows as they are now
-- =======================================================================================
-- Dimension rows carry the natural id and the attributes (no version columns: the ETL
-- versions them); fact rows carry every column of their table but run_id, with the
-- dimension keys of the versions valid at the event time (NULL when the dimension has no
-- such version yet). The ETL selects from them with its change window or keys as a WHERE
-- on their columns (pushed down to the app tables' indexes); online features select the
-- rows of a few customers. security_invoker: a reader's row-level security applies.

CREATE VIEW dw.dim_customer_source WITH (security_invoker = true) AS
SELECT c.id AS customer_id,
       c.email,
       c.first_name || ' ' || c.last_name AS full_name,
       c.gender,
       c.birth_date,
       CASE
           WHEN a.age IS NULL THEN 'unknown'
           WHEN a.age < 18 THEN 'under 18'
           WHEN a.age < 25 THEN '18-24'
           WHEN a.age < 35 THEN '25-34'
           WHEN a.age < 45 THEN '35-44'
           WHEN a.age < 55 THEN '45-54'
           WHEN a.age < 65 THEN '55-64'
           ELSE '65+'
       END AS age_band,
       c.segment,
       c.country,
       c.region,
       c.city,
       c.signup_at,
       c.updated_at
FROM app.customers AS c
CROSS JOIN LATERAL (
    SELECT EXTRACT(YEAR FROM age((c.signup_at AT TIME ZONE 'UTC')::date, c.birth_date))::int AS age
) AS a;
COMMENT ON VIEW dw.dim_customer_source IS
    'A dw.dim_customer row (attributes, no version) per app customer, as the ETL loads it.';

CREATE VIEW dw.dim_product_source WITH (security_invoker = true) AS
SELECT p.id AS product_id, p.sku, p.name, p.category, p.subcategory, p.brand,
       p.unit_price AS list_price, p.cost, p.active AS is_active, p.updated_at
FROM app.products AS p;
COMMENT ON VIEW dw.dim_product_source IS
    'A dw.dim_product row (attributes, no version) per app product, as the ETL loads it.';

CREATE VIEW dw.fact_sales_source WITH (security_invoker = true) AS
SELECT i.order_id,
       i.line_no,
       dw.date_key(o.ordered_at) AS date_key,
       o.ordered_at,
       dc.customer_key,
       dp.product_key,
       o.customer_id,
       i.product_id,
       o.status,
       o.channel,
       o.payment_method,
       i.quantity,
       i.unit_price,
       (i.quantity * i.unit_price)::numeric(14,2) AS gross,
       i.discount::numeric(14,2) AS discount,
       i.line_total::numeric(14,2) AS net,
       (i.quantity * dp.cost)::numeric(14,2) AS cost,
       (i.line_total - i.quantity * dp.cost)::numeric(14,2) AS margin
FROM app.order_items AS i
JOIN app.orders AS o ON o.id = i.order_id
LEFT JOIN dw.dim_customer AS dc
       ON dc.customer_id = o.customer_id
      AND o.ordered_at >= dc.valid_from AND o.ordered_at < dc.valid_to
LEFT JOIN dw.dim_product AS dp
       ON dp.product_id = i.product_id
      AND o.ordered_at >= dp.valid_from AND o.ordered_at < dp.valid_to;
COMMENT ON VIEW dw.fact_sales_source IS 'The dw.fact_sales row of each app order line.';

-- Grouped by order: a WHERE on order_id or customer_id (grouping columns) is pushed below
-- the aggregation to app.orders' indexes.
CREATE VIEW dw.fact_orders_source WITH (security_invoker = true) AS
SELECT o.id AS order_id,
       dw.date_key(o.ordered_at) AS date_key,
       o.ordered_at,
       dc.customer_key,
       o.customer_id,
       o.status,
       o.channel,
       o.payment_method,
       coalesce(sum(i.quantity), 0)::integer AS item_count,
       count(i.line_no)::integer AS line_count,
       coalesce(sum(i.quantity * i.unit_price), 0)::numeric(14,2) AS gross,
       coalesce(sum(i.discount), 0)::numeric(14,2) AS discount,
       coalesce(sum(i.line_total), 0)::numeric(14,2) AS net,
       round(EXTRACT(EPOCH FROM o.shipped_at - o.ordered_at) / 3600, 2)::numeric(12,2)
           AS hours_to_ship,
       round(EXTRACT(EPOCH FROM o.delivered_at - o.ordered_at) / 3600, 2)::numeric(12,2)
           AS hours_to_deliver,
       o.status = 'cancelled' AS is_cancelled,
       o.status = 'returned' AS is_returned
FROM app.orders AS o
LEFT JOIN app.order_items AS i ON i.order_id = o.id
LEFT JOIN dw.dim_customer AS dc
       ON dc.customer_id = o.customer_id
      AND o.ordered_at >= dc.valid_from AND o.ordered_at < dc.valid_to
GROUP BY o.id, o.customer_id, dc.customer_key;
COMMENT ON VIEW dw.fact_orders_source IS 'The dw.fact_orders row of each app order.';

CREATE VIEW dw.fact_returns_source WITH (security_invoker = true) AS
SELECT r.id AS return_id,
       r.order_id,
       r.line_no,
       dw.date_key(r.requested_at) AS date_key,
       r.requested_at,
       r.decided_at,
       dc.customer_key,
       dp.product_key,
       r.customer_id,
       i.product_id,
       r.reason,
       r.status,
       r.quantity,
       r.refund_amount::numeric(14,2) AS refund_amount
FROM app.returns AS r
JOIN app.order_items AS i ON i.order_id = r.order_id AND i.line_no = r.line_no
LEFT JOIN dw.dim_customer AS dc
       ON dc.customer_id = r.customer_id
      AND r.requested_at >= dc.valid_from AND r.requested_at < dc.valid_to
LEFT JOIN dw.dim_product AS dp
       ON dp.product_id = i.product_id
      AND r.requested_at >= dp.valid_from AND r.requested_at < dp.valid_to;
COMMENT ON VIEW dw.fact_returns_source IS 'The dw.fact_returns row of each app return.';

CREATE VIEW dw.fact_feedback_source WITH (security_invoker = true) AS
SELECT f.id AS feedback_id,
       dw.date_key(f.created_at) AS date_key,
       f.created_at,
       dc.customer_key,
       dp.product_key,
       f.customer_id,
       f.product_id,
       f.order_id,
       f.kind,
       f.rating,
       f.kind = 'complaint' AS is_complaint
FROM app.feedback AS f
LEFT JOIN dw.dim_customer AS dc
       ON dc.customer_id = f.customer_id
      AND f.created_at >= dc.valid_from AND f.created_at < dc.valid_to
LEFT JOIN dw.dim_product AS dp
       ON dp.product_id = f.product_id
      AND f.created_at >= dp.valid_from AND f.created_at < dp.valid_to;
COMMENT ON VIEW dw.fact_feedback_source IS 'The dw.fact_feedback row of each app feedback.';

CREATE VIEW dw.fact_support_source WITH (security_invoker = true) AS
SELECT t.id AS ticket_id,
       dw.date_key(t.opened_at) AS date_key,
       t.opened_at,
       t.resolved_at,
       dc.customer_key,
       t.customer_id,
       t.order_id,
       t.category,
       t.priority,
       t.channel,
       t.status,
       round(EXTRACT(EPOCH FROM t.resolved_at - t.opened_at) / 3600, 2)::numeric(12,2)
           AS resolution_hours,
       t.satisfaction,
       t.status IN ('resolved', 'closed') AS is_resolved
FROM app.support_tickets AS t
LEFT JOIN dw.dim_customer AS dc
       ON dc.customer_id = t.customer_id
      AND t.opened_at >= dc.valid_from AND t.opened_at < dc.valid_to;
COMMENT ON VIEW dw.fact_support_source IS 'The dw.fact_support row of each app ticket.';

-- the API role reads them for online features (as it reads dw.*)
GRANT SELECT ON dw.dim_customer_source, dw.dim_product_source, dw.fact_sales_source,
                dw.fact_orders_source, dw.fact_returns_source, dw.fact_feedback_source,
                dw.fact_support_source TO cdms_api;

-- =======================================================================================
-- 5. the change notification triggers of section 1
-- =======================================================================================
-- @lock: from here on app tables (db/migrations/sqlfile.py: writers wait only for the rest)
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['customers', 'products', 'orders', 'order_items', 'returns',
                             'feedback', 'support_tickets']
    LOOP
        EXECUTE format('CREATE TRIGGER dw_notify_change'
                       ' AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON app.%I'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION dw.notify_change()', t);
    END LOOP;
END
$$;
