-- The three schemas of cdms:
--   app  operational model (customers, products, orders, ...), written by the API
--   dw   star-schema warehouse, written only by the ETL
--   ml   model registry and prediction log
CREATE SCHEMA IF NOT EXISTS app;
CREATE SCHEMA IF NOT EXISTS dw;
CREATE SCHEMA IF NOT EXISTS ml;

COMMENT ON SCHEMA app IS 'cdms operational model';
COMMENT ON SCHEMA dw IS 'cdms star-schema warehouse (loaded by etl/)';
COMMENT ON SCHEMA ml IS 'cdms model registry and prediction log';
