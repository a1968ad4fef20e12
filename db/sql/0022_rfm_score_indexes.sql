-- The open month's RFM scores are redone by what moved (etl/sql/fact_customer_rfm.sql,
-- open_edges; etl/retile.py): a few customers' new values move only the customers at the
-- edges of the tiles, found through these indexes (each tile's first and last rows by the
-- score's own ordering) instead of three sorts of every customer of the month per run.
CREATE INDEX fact_customer_rfm_r_idx ON dw.fact_customer_rfm (month, r_score, last_at, customer_id);
CREATE INDEX fact_customer_rfm_f_idx ON dw.fact_customer_rfm (month, f_score, frequency, customer_id);
CREATE INDEX fact_customer_rfm_m_idx ON dw.fact_customer_rfm (month, m_score, monetary, customer_id);
