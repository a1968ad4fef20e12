-- 0016: what the continuous ETL needs to redo only what moved.
--
-- The RFM snapshot keeps each customer's last order instant, so a run can redo only
-- the open month's customers whose values moved (etl/sql/fact_customer_rfm.sql, open_*):
-- recency_days is floored, and the recency score ranks the instant itself.
-- Rows written before have none; a month with such a row is rebuilt whole when next redone.

ALTER TABLE dw.fact_customer_rfm ADD COLUMN last_at timestamptz;
COMMENT ON COLUMN dw.fact_customer_rfm.last_at IS
    'the customer''s last order (not cancelled) before as_of; recency_days is from it';
COMMENT ON COLUMN dw.fact_customer_rfm.as_of IS
    'the instant the row was computed at: the month''s end, or for the open month the '
    'horizon of the run that last wrote the row (every row of the month is exact as of the '
    'month''s newest as_of)';

-- The rules (semantic/models/rules/rfm.yml) the open month was last rebuilt with: a run
-- redoes only what moved while they are the same, and rebuilds the month when they changed.
ALTER TABLE dw.etl_state ADD COLUMN rfm_rules text;
COMMENT ON COLUMN dw.etl_state.rfm_rules IS
    'md5 of the RFM rules (window, scores, cells) the open month of dw.fact_customer_rfm was '
    'last rebuilt with';

-- A new customer version moves the open month's customer_key: found by when it began.
CREATE INDEX dim_customer_valid_from_idx ON dw.dim_customer (valid_from);

-- The churn features of the customers a run touched (ml/sql/customers.sql) read their
-- order lines: without it, a parallel scan of every line (~250 ms of both cores a run at
-- 1M orders).
CREATE INDEX fact_sales_customer_id_idx ON dw.fact_sales (customer_id);
