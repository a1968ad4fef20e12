-- 0010_cube_stock_and_indexes: the daily stock snapshot fact and indexes on the facts' event times.
--
-- Safe while the previous version serves: the new table is empty until the next ETL run,
-- and the indexes are built with plain CREATE INDEX inside this migration's transaction
-- (CREATE INDEX CONCURRENTLY cannot run in a transaction). That holds a SHARE lock on
-- each dw fact table while its index builds: reads (cube queries, the dashboard) go on,
-- only the ETL's writes wait (seconds at a million orders). No app table is touched.

-- ---------------------------------------------------------------------------------------
-- event-time indexes: a cube filter on a time range (one week of sales) reads that range
-- ---------------------------------------------------------------------------------------
CREATE INDEX fact_sales_ordered_at_idx ON dw.fact_sales (ordered_at);
CREATE INDEX fact_orders_ordered_at_idx ON dw.fact_orders (ordered_at);
CREATE INDEX fact_returns_requested_at_idx ON dw.fact_returns (requested_at);
CREATE INDEX fact_feedback_created_at_idx ON dw.fact_feedback (created_at);
CREATE INDEX fact_support_opened_at_idx ON dw.fact_support (opened_at);

-- ---------------------------------------------------------------------------------------
-- fact_stock_daily
-- ---------------------------------------------------------------------------------------
CREATE TABLE dw.fact_stock_daily (
    snapshot_date  date    NOT NULL,
    product_id     bigint  NOT NULL,
    product_key    bigint  NOT NULL,  -- dw.dim_product (taken from it by the same
                                      -- statement; no foreign key: millions of checks a load)
    units_on_hand  integer NOT NULL,
    PRIMARY KEY (product_id, snapshot_date)
);
COMMENT ON TABLE dw.fact_stock_daily IS
    'Grain: one row per product per UTC day (a periodic snapshot, semi-additive: units add '
    'up across products, never across days). units_on_hand is the stock at the end of the '
    'day: app.products.stock minus the movements after it (orders take stock when placed, '
    'cancellations and approved returns give it back). product_key is the version valid at '
    'the end of the day. Loaded by etl/sql/fact_stock_daily.sql.';
-- the cube filters and buckets the snapshot as a UTC instant (semantic/models/stock.yml),
-- and the ETL finds the first and last days through the same index (one secondary index:
-- a full load writes millions of rows)
CREATE INDEX fact_stock_daily_at_idx
    ON dw.fact_stock_daily ((snapshot_date::timestamp AT TIME ZONE 'UTC'));
GRANT SELECT ON dw.fact_stock_daily TO cdms_api;
