-- 0022: what a pipeline run reads under a steady write load, through indexes instead of
-- scans of a whole month or dimension (each measured at 15-30 ms a run at 1M orders).
--
-- The open month's RFM scores are redone by what moved (etl/sql/fact_customer_rfm.sql,
-- open_edges; etl/retile.py): a few customers' new values move only the customers at the
-- edges of the tiles, found through an index per score (each tile's first and last rows
-- by the score's own ordering) instead of three sorts of every customer of the month.
CREATE INDEX fact_customer_rfm_r_idx ON dw.fact_customer_rfm (month, r_score, last_at, customer_id);
CREATE INDEX fact_customer_rfm_f_idx ON dw.fact_customer_rfm (month, f_score, frequency, customer_id);
CREATE INDEX fact_customer_rfm_m_idx ON dw.fact_customer_rfm (month, m_score, monetary, customer_id);
-- A row's recency_days holds while the horizon is within [this, this + 1 day) (open_keys:
-- the customers a whole day since their last order moved).
CREATE INDEX fact_customer_rfm_recency_idx
    ON dw.fact_customer_rfm (month, ((last_at AT TIME ZONE 'UTC') + make_interval(days => recency_days)));
-- The current customer versions a run wrote (the customers whose churn risk it re-scores).
CREATE INDEX dim_customer_current_run_idx ON dw.dim_customer (run_id) WHERE is_current;
-- fact_stock_daily's movements since today of the products a run changed: their lines in
-- the orders from today's first id on (product, then order: a range per product, not
-- every line of a best seller nor every line of the day), and today's cancellations.
-- @lock: from here on app tables (db/migrations/sqlfile.py: writers wait only for the rest)
DROP INDEX app.order_items_product_idx;
CREATE INDEX order_items_product_idx ON app.order_items (product_id, order_id);
CREATE INDEX orders_cancelled_idx ON app.orders (cancelled_at) WHERE status = 'cancelled';
