-- dim_product: SCD type 2 on list_price, cost, category, subcategory; the rest is type 1.
-- Parameters: :lo, :hi - the change window [lo, hi) on app.products.updated_at.

-- name: stage
CREATE TEMP TABLE _src ON COMMIT DROP AS
SELECT p.id AS product_id, p.sku, p.name, p.category, p.subcategory, p.brand,
       p.unit_price AS list_price, p.cost, p.active AS is_active, p.updated_at
FROM app.products AS p
WHERE p.updated_at >= :lo AND p.updated_at < :hi;

-- name: type1
UPDATE dw.dim_product AS d
SET sku = s.sku, name = s.name, brand = s.brand, is_active = s.is_active
FROM _src AS s
WHERE d.product_id = s.product_id
  AND (d.sku, d.name, d.brand, d.is_active) IS DISTINCT FROM (s.sku, s.name, s.brand, s.is_active);

-- name: close
WITH closed AS (
    UPDATE dw.dim_product AS d
    SET valid_to = greatest(s.updated_at, d.valid_from + interval '1 microsecond'),
        is_current = false
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
                            cost, is_active, valid_from)
SELECT s.product_id, s.sku, s.name, s.category, s.subcategory, s.brand, s.list_price,
       s.cost, s.is_active, c.changed_at
FROM _src AS s
JOIN _closed AS c ON c.natural_id = s.product_id;

-- name: new
INSERT INTO dw.dim_product (product_id, sku, name, category, subcategory, brand, list_price,
                            cost, is_active, valid_from)
SELECT s.product_id, s.sku, s.name, s.category, s.subcategory, s.brand, s.list_price,
       s.cost, s.is_active, '-infinity'
FROM _src AS s
WHERE NOT EXISTS (SELECT 1 FROM dw.dim_product AS d WHERE d.product_id = s.product_id);
