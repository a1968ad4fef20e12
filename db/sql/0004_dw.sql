-- Warehouse: a star schema in `dw`, loaded from `app` by the ETL in etl/ (docs/etl.md).
--
-- Conventions
--   * date_key is an int yyyymmdd (dw.date_key(ts)); calendar dates are UTC dates.
--   * Surrogate keys (customer_key, product_key) are identity columns and carry no meaning:
--     two warehouses with the same content may number them differently. "Same warehouse"
--     is defined over natural content: a fact's dimension key is compared through the
--     dimension row's (natural id, valid_from) - see etl/checks.py:checksums().
--   * SCD type 2 rows are valid over [valid_from, valid_to). The first version of an entity
--     starts at '-infinity' so facts older than the warehouse find it; the current version
--     ends at 'infinity' and has is_current.
--   * Facts carry their natural ids (order_id, line_no, customer_id, product_id, ...) and
--     the event timestamp beside the date key, so cubes can group at any time grain.
--   * Money is numeric(14,2); durations in hours are numeric(12,2).
--   * fact_sales and fact_orders are re-written when an order changes status: they keep
--     10 % free space and no index on status, so those updates are HOT (no index writes).

-- ---------------------------------------------------------------------------------------
-- helpers
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION dw.date_key(ts timestamptz) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
-- date_part (double precision) rather than EXTRACT (numeric): it runs on every fact row.
RETURN date_part('year', ts AT TIME ZONE 'UTC')::integer * 10000
     + date_part('month', ts AT TIME ZONE 'UTC')::integer * 100
     + date_part('day', ts AT TIME ZONE 'UTC')::integer;
COMMENT ON FUNCTION dw.date_key(timestamptz) IS 'yyyymmdd of the UTC calendar date of ts.';

-- ---------------------------------------------------------------------------------------
-- dim_date
-- ---------------------------------------------------------------------------------------
CREATE TABLE dw.dim_date (
    date_key      integer  PRIMARY KEY,
    date          date     NOT NULL UNIQUE,
    year          smallint NOT NULL,
    quarter       smallint NOT NULL CHECK (quarter BETWEEN 1 AND 4),
    month         smallint NOT NULL CHECK (month BETWEEN 1 AND 12),
    month_name    text     NOT NULL,
    year_month    text     NOT NULL,
    day_of_month  smallint NOT NULL CHECK (day_of_month BETWEEN 1 AND 31),
    day_of_year   smallint NOT NULL CHECK (day_of_year BETWEEN 1 AND 366),
    day_of_week   smallint NOT NULL CHECK (day_of_week BETWEEN 1 AND 7),
    day_name      text     NOT NULL,
    iso_year      smallint NOT NULL,
    iso_week      smallint NOT NULL CHECK (iso_week BETWEEN 1 AND 53),
    is_weekend    boolean  NOT NULL,
    CHECK (date_key = EXTRACT(YEAR FROM date) * 10000 + EXTRACT(MONTH FROM date) * 100
                      + EXTRACT(DAY FROM date))
);
COMMENT ON TABLE dw.dim_date IS
    'Grain: one row per calendar day, contiguous from the earliest source event date to the '
    'latest plus one year; the ETL extends it when a source row falls outside.';
COMMENT ON COLUMN dw.dim_date.day_of_week IS 'ISO day of week: 1 = Monday ... 7 = Sunday.';
COMMENT ON COLUMN dw.dim_date.year_month IS 'yyyy-mm, sortable.';

-- Insert every missing day in [p_from, p_to] (idempotent); returns the rows added.
CREATE FUNCTION dw.ensure_dates(p_from date, p_to date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_added integer;
BEGIN
    INSERT INTO dw.dim_date (date_key, date, year, quarter, month, month_name, year_month,
                             day_of_month, day_of_year, day_of_week, day_name, iso_year,
                             iso_week, is_weekend)
    SELECT (EXTRACT(YEAR FROM d) * 10000 + EXTRACT(MONTH FROM d) * 100 + EXTRACT(DAY FROM d))::int,
           d,
           EXTRACT(YEAR FROM d)::smallint,
           EXTRACT(QUARTER FROM d)::smallint,
           EXTRACT(MONTH FROM d)::smallint,
           trim(to_char(d, 'Month')),
           to_char(d, 'YYYY-MM'),
           EXTRACT(DAY FROM d)::smallint,
           EXTRACT(DOY FROM d)::smallint,
           EXTRACT(ISODOW FROM d)::smallint,
           trim(to_char(d, 'Day')),
           EXTRACT(ISOYEAR FROM d)::smallint,
           EXTRACT(WEEK FROM d)::smallint,
           EXTRACT(ISODOW FROM d) IN (6, 7)
    FROM generate_series(p_from, p_to, interval '1 day') AS g(ts),
         LATERAL (SELECT g.ts::date AS d) AS x
    ON CONFLICT (date_key) DO NOTHING;
    GET DIAGNOSTICS v_added = ROW_COUNT;
    RETURN v_added;
END;
$$;
COMMENT ON FUNCTION dw.ensure_dates(date, date) IS
    'Add the missing dim_date days between two dates (inclusive); returns how many were added.';

-- ---------------------------------------------------------------------------------------
-- dim_customer (SCD type 2 on segment, country, region, city)
-- ---------------------------------------------------------------------------------------
CREATE TABLE dw.dim_customer (
    customer_key  bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    customer_id   bigint      NOT NULL,
    email         text        NOT NULL,
    full_name     text        NOT NULL,
    gender        text,
    birth_date    date,
    age_band      text        NOT NULL,
    segment       text        NOT NULL,
    country       text        NOT NULL,
    region        text        NOT NULL,
    city          text        NOT NULL,
    signup_at     timestamptz NOT NULL,
    valid_from    timestamptz NOT NULL,
    valid_to      timestamptz NOT NULL DEFAULT 'infinity',
    is_current    boolean     NOT NULL DEFAULT true,
    UNIQUE (customer_id, valid_from),
    CHECK (valid_from < valid_to),
    CHECK (is_current = (valid_to = 'infinity'))
);
COMMENT ON TABLE dw.dim_customer IS
    'Grain: one row per customer per version. SCD type 2 on segment, country, region, city '
    '(a change closes the current row at the source updated_at and opens a new one); '
    'email, full_name, gender, birth_date, age_band, signup_at are type 1 (overwritten on every version).';
COMMENT ON COLUMN dw.dim_customer.age_band IS
    'Age at signup: under 18, 18-24, 25-34, 35-44, 45-54, 55-64, 65+, unknown (stable, so reloads are idempotent).';
COMMENT ON COLUMN dw.dim_customer.customer_id IS 'Natural id: app.customers.id.';
CREATE UNIQUE INDEX dim_customer_current_key ON dw.dim_customer (customer_id) WHERE is_current;
CREATE INDEX dim_customer_geo_idx ON dw.dim_customer (country, region, city);
CREATE INDEX dim_customer_segment_idx ON dw.dim_customer (segment);

-- ---------------------------------------------------------------------------------------
-- dim_product (SCD type 2 on list_price, cost, category, subcategory)
-- ---------------------------------------------------------------------------------------
CREATE TABLE dw.dim_product (
    product_key   bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    product_id    bigint        NOT NULL,
    sku           text          NOT NULL,
    name          text          NOT NULL,
    category      text          NOT NULL,
    subcategory   text          NOT NULL,
    brand         text          NOT NULL,
    list_price    numeric(12,2) NOT NULL,
    cost          numeric(12,2) NOT NULL,
    is_active     boolean       NOT NULL,
    valid_from    timestamptz   NOT NULL,
    valid_to      timestamptz   NOT NULL DEFAULT 'infinity',
    is_current    boolean       NOT NULL DEFAULT true,
    UNIQUE (product_id, valid_from),
    CHECK (valid_from < valid_to),
    CHECK (is_current = (valid_to = 'infinity'))
);
COMMENT ON TABLE dw.dim_product IS
    'Grain: one row per product per version. SCD type 2 on list_price, cost, category, '
    'subcategory; sku, name, brand, is_active are type 1 (overwritten on every version).';
COMMENT ON COLUMN dw.dim_product.product_id IS 'Natural id: app.products.id.';
CREATE UNIQUE INDEX dim_product_current_key ON dw.dim_product (product_id) WHERE is_current;
CREATE INDEX dim_product_category_idx ON dw.dim_product (category, subcategory);
CREATE INDEX dim_product_brand_idx ON dw.dim_product (brand);

-- ---------------------------------------------------------------------------------------
-- fact_sales
-- ---------------------------------------------------------------------------------------
CREATE TABLE dw.fact_sales (
    order_id        bigint        NOT NULL,
    line_no         integer       NOT NULL,
    date_key        integer       NOT NULL REFERENCES dw.dim_date (date_key),
    ordered_at      timestamptz   NOT NULL,
    customer_key    bigint        NOT NULL REFERENCES dw.dim_customer (customer_key),
    product_key     bigint        NOT NULL REFERENCES dw.dim_product (product_key),
    customer_id     bigint        NOT NULL,
    product_id      bigint        NOT NULL,
    status          text          NOT NULL,
    channel         text          NOT NULL,
    payment_method  text          NOT NULL,
    quantity        integer       NOT NULL,
    unit_price      numeric(12,2) NOT NULL,
    gross           numeric(14,2) NOT NULL,
    discount        numeric(14,2) NOT NULL,
    net             numeric(14,2) NOT NULL,
    cost            numeric(14,2) NOT NULL,
    margin          numeric(14,2) NOT NULL,
    PRIMARY KEY (order_id, line_no),
    CHECK (net = gross - discount),
    CHECK (margin = net - cost)
) WITH (fillfactor = 90);
COMMENT ON TABLE dw.fact_sales IS
    'Grain: one row per order line (app.order_items). Keys are the dimension versions '
    'current at ordered_at. gross = quantity * unit_price, net = gross - discount '
    '(= app line_total), cost = quantity * dim_product.cost of that version, margin = net - cost. '
    'status/channel/payment_method are the order''s, as of the last load.';
CREATE INDEX fact_sales_date_idx ON dw.fact_sales (date_key);
CREATE INDEX fact_sales_customer_idx ON dw.fact_sales (customer_key);
CREATE INDEX fact_sales_product_idx ON dw.fact_sales (product_key);

-- ---------------------------------------------------------------------------------------
-- fact_orders
-- ---------------------------------------------------------------------------------------
CREATE TABLE dw.fact_orders (
    order_id          bigint        PRIMARY KEY,
    date_key          integer       NOT NULL REFERENCES dw.dim_date (date_key),
    ordered_at        timestamptz   NOT NULL,
    customer_key      bigint        NOT NULL REFERENCES dw.dim_customer (customer_key),
    customer_id       bigint        NOT NULL,
    status            text          NOT NULL,
    channel           text          NOT NULL,
    payment_method    text          NOT NULL,
    item_count        integer       NOT NULL,
    line_count        integer       NOT NULL,
    gross             numeric(14,2) NOT NULL,
    discount          numeric(14,2) NOT NULL,
    net               numeric(14,2) NOT NULL,
    hours_to_ship     numeric(12,2),
    hours_to_deliver  numeric(12,2),
    is_cancelled      boolean       NOT NULL,
    is_returned       boolean       NOT NULL,
    CHECK (net = gross - discount)
) WITH (fillfactor = 90);
COMMENT ON TABLE dw.fact_orders IS
    'Grain: one row per order (app.orders). customer_key is the version current at ordered_at. '
    'item_count = sum of line quantities, line_count = number of lines, gross/discount/net '
    'summed over the lines (net = app total_amount). hours_to_ship = shipped_at - ordered_at, '
    'hours_to_deliver = delivered_at - ordered_at (NULL until it happens). '
    'is_cancelled/is_returned: status is cancelled/returned.';
CREATE INDEX fact_orders_date_idx ON dw.fact_orders (date_key);
CREATE INDEX fact_orders_customer_idx ON dw.fact_orders (customer_key);

-- ---------------------------------------------------------------------------------------
-- fact_returns
-- ---------------------------------------------------------------------------------------
CREATE TABLE dw.fact_returns (
    return_id      bigint        PRIMARY KEY,
    order_id       bigint        NOT NULL,
    line_no        integer       NOT NULL,
    date_key       integer       NOT NULL REFERENCES dw.dim_date (date_key),
    requested_at   timestamptz   NOT NULL,
    decided_at     timestamptz,
    customer_key   bigint        NOT NULL REFERENCES dw.dim_customer (customer_key),
    product_key    bigint        NOT NULL REFERENCES dw.dim_product (product_key),
    customer_id    bigint        NOT NULL,
    product_id     bigint        NOT NULL,
    reason         text          NOT NULL,
    status         text          NOT NULL,
    quantity       integer       NOT NULL,
    refund_amount  numeric(14,2)
);
COMMENT ON TABLE dw.fact_returns IS
    'Grain: one row per return request (app.returns). Keys are the versions current at '
    'requested_at; date_key is the request date. refund_amount is NULL until approved.';
CREATE INDEX fact_returns_date_idx ON dw.fact_returns (date_key);
CREATE INDEX fact_returns_customer_idx ON dw.fact_returns (customer_key);
CREATE INDEX fact_returns_product_idx ON dw.fact_returns (product_key);
CREATE INDEX fact_returns_line_idx ON dw.fact_returns (order_id, line_no);

-- ---------------------------------------------------------------------------------------
-- fact_feedback
-- ---------------------------------------------------------------------------------------
CREATE TABLE dw.fact_feedback (
    feedback_id   bigint      PRIMARY KEY,
    date_key      integer     NOT NULL REFERENCES dw.dim_date (date_key),
    created_at    timestamptz NOT NULL,
    customer_key  bigint      NOT NULL REFERENCES dw.dim_customer (customer_key),
    product_key   bigint      REFERENCES dw.dim_product (product_key),
    customer_id   bigint      NOT NULL,
    product_id    bigint,
    order_id      bigint,
    kind          text        NOT NULL,
    rating        smallint    NOT NULL,
    is_complaint  boolean     NOT NULL,
    CHECK ((product_id IS NULL) = (product_key IS NULL))
);
COMMENT ON TABLE dw.fact_feedback IS
    'Grain: one row per feedback (app.feedback). Keys are the versions current at created_at; '
    'product_key/product_id are NULL for feedback about an order only. is_complaint: kind = complaint.';
CREATE INDEX fact_feedback_date_idx ON dw.fact_feedback (date_key);
CREATE INDEX fact_feedback_customer_idx ON dw.fact_feedback (customer_key);
CREATE INDEX fact_feedback_product_idx ON dw.fact_feedback (product_key);

-- ---------------------------------------------------------------------------------------
-- fact_support
-- ---------------------------------------------------------------------------------------
CREATE TABLE dw.fact_support (
    ticket_id         bigint      PRIMARY KEY,
    date_key          integer     NOT NULL REFERENCES dw.dim_date (date_key),
    opened_at         timestamptz NOT NULL,
    resolved_at       timestamptz,
    customer_key      bigint      NOT NULL REFERENCES dw.dim_customer (customer_key),
    customer_id       bigint      NOT NULL,
    order_id          bigint,
    category          text        NOT NULL,
    priority          text        NOT NULL,
    channel           text        NOT NULL,
    status            text        NOT NULL,
    resolution_hours  numeric(12,2),
    satisfaction      smallint,
    is_resolved       boolean     NOT NULL
);
COMMENT ON TABLE dw.fact_support IS
    'Grain: one row per support ticket (app.support_tickets). customer_key is the version '
    'current at opened_at; date_key is the opening date. resolution_hours = resolved_at - '
    'opened_at (NULL while unresolved); is_resolved: status is resolved or closed.';
CREATE INDEX fact_support_date_idx ON dw.fact_support (date_key);
CREATE INDEX fact_support_customer_idx ON dw.fact_support (customer_key);
CREATE INDEX fact_support_status_idx ON dw.fact_support (status, priority);

-- ---------------------------------------------------------------------------------------
-- ETL bookkeeping: runs, steps, watermarks, warehouse version, captured source deletes
-- ---------------------------------------------------------------------------------------
CREATE TABLE dw.etl_run (
    run_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mode         text        NOT NULL CHECK (mode IN ('incremental', 'full')),
    status       text        NOT NULL DEFAULT 'running'
                 CHECK (status IN ('running', 'succeeded', 'failed')),
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at  timestamptz,
    horizon      timestamptz,
    pid          integer,
    error        text,
    checks       jsonb,
    CHECK ((status = 'running') = (finished_at IS NULL))
);
COMMENT ON TABLE dw.etl_run IS
    'One row per ETL run. horizon: source rows changed before it are loaded by this run. '
    'A run left ''running'' by a killed process is marked failed by the next run.';
CREATE INDEX etl_run_started_idx ON dw.etl_run (started_at DESC);

CREATE TABLE dw.etl_run_step (
    run_id          bigint      NOT NULL REFERENCES dw.etl_run (run_id) ON DELETE CASCADE,
    step            text        NOT NULL,
    position        smallint    NOT NULL,
    status          text        NOT NULL CHECK (status IN ('succeeded', 'failed')),
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz NOT NULL,
    watermark_from  timestamptz,
    watermark_to    timestamptz,
    rows_read       bigint      NOT NULL DEFAULT 0,
    rows_inserted   bigint      NOT NULL DEFAULT 0,
    rows_updated    bigint      NOT NULL DEFAULT 0,
    rows_deleted    bigint      NOT NULL DEFAULT 0,
    error           text,
    PRIMARY KEY (run_id, step)
);
COMMENT ON TABLE dw.etl_run_step IS
    'One row per step of a run. A succeeded row is written in the step''s own transaction '
    '(with its loads and its watermark); a failed row after that transaction rolled back.';

CREATE TABLE dw.etl_watermark (
    step        text        PRIMARY KEY,
    high_water  timestamptz NOT NULL,
    run_id      bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE dw.etl_watermark IS
    'Per step: every source change with updated_at (or deleted_at) before high_water is loaded. '
    'Advanced in the same transaction as the step''s writes.';

CREATE TABLE dw.etl_state (
    id               boolean     PRIMARY KEY DEFAULT true CHECK (id),
    version          bigint      NOT NULL DEFAULT 0,
    last_success_at  timestamptz,
    last_run_id      bigint
);
COMMENT ON TABLE dw.etl_state IS
    'Single row. version is bumped by every successful run that changed the warehouse (and by '
    'every full rebuild); caches over dw.* key on it.';
INSERT INTO dw.etl_state (id) VALUES (true);

-- Deletes in the operational tables, captured so the ETL can remove their facts without
-- scanning whole tables. deleted_at is now() of the deleting transaction, which makes it
-- obey the same watermark rule as updated_at. TRUNCATE records a row with key_id NULL
-- (the step then compares the whole fact table with its source).
CREATE TABLE dw.etl_source_delete (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source      text        NOT NULL,
    key_id      bigint,
    line_no     integer,
    deleted_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE dw.etl_source_delete IS
    'Deleted (or truncated: key_id NULL) app rows, written by triggers; pruned by the ETL once '
    'every step''s watermark has passed them.';
CREATE INDEX etl_source_delete_at_idx ON dw.etl_source_delete (source, deleted_at);

CREATE FUNCTION dw.capture_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO dw.etl_source_delete (source) VALUES (TG_TABLE_NAME);
    ELSIF TG_OP = 'UPDATE' THEN
        -- An order line moved to another (order_id, line_no): its old key is gone.
        INSERT INTO dw.etl_source_delete (source, key_id, line_no)
        SELECT TG_TABLE_NAME, o.order_id, o.line_no FROM old_rows AS o
        WHERE NOT EXISTS (SELECT 1 FROM new_rows AS n
                          WHERE n.order_id = o.order_id AND n.line_no = o.line_no);
    ELSIF TG_TABLE_NAME = 'order_items' THEN
        INSERT INTO dw.etl_source_delete (source, key_id, line_no)
        SELECT TG_TABLE_NAME, o.order_id, o.line_no FROM old_rows AS o;
    ELSE
        INSERT INTO dw.etl_source_delete (source, key_id)
        SELECT TG_TABLE_NAME, o.id FROM old_rows AS o;
    END IF;
    RETURN NULL;
END;
$$;

-- @lock: from here on app tables (db/migrations/sqlfile.py: writers wait only for the rest)
CREATE TRIGGER dw_capture_delete AFTER DELETE ON app.orders
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION dw.capture_delete();
CREATE TRIGGER dw_capture_delete AFTER DELETE ON app.order_items
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION dw.capture_delete();
CREATE TRIGGER dw_capture_key_change AFTER UPDATE ON app.order_items
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION dw.capture_delete();
CREATE TRIGGER dw_capture_delete AFTER DELETE ON app.returns
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION dw.capture_delete();
CREATE TRIGGER dw_capture_delete AFTER DELETE ON app.feedback
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION dw.capture_delete();
CREATE TRIGGER dw_capture_delete AFTER DELETE ON app.support_tickets
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION dw.capture_delete();
CREATE TRIGGER dw_capture_truncate AFTER TRUNCATE ON app.orders
    FOR EACH STATEMENT EXECUTE FUNCTION dw.capture_delete();
CREATE TRIGGER dw_capture_truncate AFTER TRUNCATE ON app.order_items
    FOR EACH STATEMENT EXECUTE FUNCTION dw.capture_delete();
CREATE TRIGGER dw_capture_truncate AFTER TRUNCATE ON app.returns
    FOR EACH STATEMENT EXECUTE FUNCTION dw.capture_delete();
CREATE TRIGGER dw_capture_truncate AFTER TRUNCATE ON app.feedback
    FOR EACH STATEMENT EXECUTE FUNCTION dw.capture_delete();
CREATE TRIGGER dw_capture_truncate AFTER TRUNCATE ON app.support_tickets
    FOR EACH STATEMENT EXECUTE FUNCTION dw.capture_delete();
-- Dimensions keep customers and products that disappear; a TRUNCATE (a reseed) still makes
-- their steps re-read everything, since reseeded rows may carry old updated_at values.
CREATE TRIGGER dw_capture_truncate AFTER TRUNCATE ON app.customers
    FOR EACH STATEMENT EXECUTE FUNCTION dw.capture_delete();
CREATE TRIGGER dw_capture_truncate AFTER TRUNCATE ON app.products
    FOR EACH STATEMENT EXECUTE FUNCTION dw.capture_delete();
