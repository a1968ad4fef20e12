-- 0012: behavioural segmentation - the monthly RFM snapshot per customer.
--
-- Loaded by the ETL step fact_customer_rfm (etl/sql/fact_customer_rfm.sql) with the rule
-- table semantic/models/rules/rfm.yml; read by the cubes rfm and segmentMigration
-- (semantic/models/rfm.yml, segment_migration.yml).

CREATE TABLE dw.fact_customer_rfm (
    month          date          NOT NULL,  -- first day of the UTC month
    customer_id    bigint        NOT NULL,
    customer_key   bigint        NOT NULL,  -- dw.dim_customer version valid at as_of
    as_of          timestamptz   NOT NULL,  -- the month's end, or the run's horizon for
                                            -- the open month
    recency_days   integer       NOT NULL,
    frequency      integer       NOT NULL,
    monetary       numeric(14,2) NOT NULL,
    month_orders   integer       NOT NULL,
    month_revenue  numeric(14,2) NOT NULL,
    r_score        smallint      NOT NULL CHECK (r_score BETWEEN 1 AND 9),
    f_score        smallint      NOT NULL CHECK (f_score BETWEEN 1 AND 9),
    m_score        smallint      NOT NULL CHECK (m_score BETWEEN 1 AND 9),
    fm_score       smallint      NOT NULL CHECK (fm_score BETWEEN 1 AND 9),
    segment        text          NOT NULL,
    run_id         bigint,
    PRIMARY KEY (customer_id, month)
);
COMMENT ON TABLE dw.fact_customer_rfm IS
    'Grain: one row per customer per UTC month, from the first month the customer placed an '
    'order that was not cancelled (a periodic snapshot: counts add up across customers, not '
    'across months). recency_days = days from the last order to as_of; frequency, monetary '
    '= orders and their net amount in the trailing window (semantic/models/rules/rfm.yml); '
    'month_orders, month_revenue = those of the month itself. Scores are quintiles among '
    'the month''s customers; segment = the rule holding (r_score, fm_score).';
CREATE INDEX fact_customer_rfm_month_idx ON dw.fact_customer_rfm (month, segment);
GRANT SELECT ON dw.fact_customer_rfm TO cdms_api;
