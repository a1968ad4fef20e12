-- dim_product: SCD type 2 on list_price, cost, category, subcategory; the rest is type 1.
-- Rows: the view dw.dim_product_source (db/sql/0011_freshness_pipeline.sql).
-- Parameters: :lo, :hi - the change window [lo, hi) on app.products.updated_at (see stage);
-- :run - the run's id, stamped on every row written (lineage).

-- name: stage
-- The window, and the rows changed since :lo that the dimension lacks whatever their
-- updated_at: a new product changed again after the horizon while the facts in the window
-- name it (and every row in a full run, the dimension just truncated). Taking such a row
-- early misses nothing: a change this snapshot does not see has an updated_at at or after
-- the horizon, and so has the row seen (the next run reads it again and finds no change).
CREATE TEMP TABLE _src ON COMMIT DROP AS
SELECT * FROM dw.dim_product_source AS s
WHERE s.updated_at >= :lo
  AND (s.updated_at < :hi
       OR NOT EXISTS (SELECT 1 FROM dw.dim_product AS d
                      WHERE d.product_id = s.product_id AND d.is_current));

-- name: type1
-- (the versions it rewrites go to _type1: their facts are touched)
WITH changed AS (
    UPDATE dw.dim_product AS d
    SET sku = s.sku, name = s.name, brand = s.brand, is_active = s.is_active, run_id = :run
    FROM _src AS s
    WHERE d.product_id = s.product_id
      AND (d.sku, d.name, d.brand, d.is_active)
          IS DISTINCT FROM (s.sku, s.name, s.brand, s.is_active)
    RETURNING d.product_key
)
INSERT INTO _type1 (dim_key) SELECT product_key FROM changed;

-- name: close
WITH closed AS (
    UPDATE dw.dim_product AS d
    SET valid_to = greatest(s.updated_at, d.valid_from + interval '1 microsecond'),
        is_current = false, run_id = :run
    FROM _src AS s
    WHERE d.product_id = s.product_id
      AND d.is_current
      AND (d.list_price, d.cost, d.category, d.subcategory)
          IS DISTINCT FROM (s.list_price, s.cost, s.category, s.subcategory)
    RETURNING d.product_id AS natural_id, d.product_key AS old_key, d.valid_to AS changed_at
)
INSERT INTO _closed (natural_id, old_key, changed_at)
SELECT natural_id, old_key, changed_at FROM closed;

-- name: open
INSERT INTO dw.dim_product (product_id, sku, name, category, subcategory, brand, list_price,
                            cost, is_active, valid_from, run_id)
SELECT s.product_id, s.sku, s.name, s.category, s.subcategory, s.brand, s.list_price,
       s.cost, s.is_active, c.changed_at, :run
FROM _src AS s
JOIN _closed AS c ON c.natural_id = s.product_id;

-- name: new
INSERT INTO dw.dim_product (product_id, sku, name, category, subcategory, brand, list_price,
                            cost, is_active, valid_from, run_id)
SELECT s.product_id, s.sku, s.name, s.category, s.subcategory, s.brand, s.list_price,
       s.cost, s.is_active, '-infinity', :run
FROM _src AS s
WHERE NOT EXISTS (SELECT 1 FROM dw.dim_product AS d WHERE d.product_id = s.product_id);
