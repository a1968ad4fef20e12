-- dim_customer: SCD type 2 on segment, country, region, city; the rest is type 1.
-- Rows: the view dw.dim_customer_source (db/sql/0011_freshness_pipeline.sql).
-- Parameters: :lo, :hi - the change window [lo, hi) on app.customers.updated_at (and
-- see stage); :run - the run's id, stamped on every row written (lineage).
-- The runner adds the re-key statements for the facts (etl/steps.py declares them).

-- name: stage
-- The window, and the rows changed since :lo that the dimension lacks whatever their
-- updated_at: a new customer changed again after the horizon while the facts in the window
-- name it (and every row in a full run, the dimension just truncated). Taking such a row
-- early misses nothing: a change this snapshot does not see has an updated_at at or after
-- the horizon, and so has the row seen (the next run reads it again and finds no change).
CREATE TEMP TABLE _src ON COMMIT DROP AS
SELECT * FROM dw.dim_customer_source AS s
WHERE s.updated_at >= :lo
  AND (s.updated_at < :hi
       OR NOT EXISTS (SELECT 1 FROM dw.dim_customer AS d
                      WHERE d.customer_id = s.customer_id AND d.is_current));

-- name: type1
-- (the versions it rewrites go to _type1: their facts are touched)
WITH changed AS (
    UPDATE dw.dim_customer AS d
    SET email = s.email, full_name = s.full_name, gender = s.gender, birth_date = s.birth_date,
        age_band = s.age_band, signup_at = s.signup_at, run_id = :run
    FROM _src AS s
    WHERE d.customer_id = s.customer_id
      AND (d.email, d.full_name, d.gender, d.birth_date, d.age_band, d.signup_at)
          IS DISTINCT FROM (s.email, s.full_name, s.gender, s.birth_date, s.age_band, s.signup_at)
    RETURNING d.customer_key
)
INSERT INTO _type1 (dim_key) SELECT customer_key FROM changed;

-- name: close
-- The current version ends when the source row last changed (never before it began).
WITH closed AS (
    UPDATE dw.dim_customer AS d
    SET valid_to = greatest(s.updated_at, d.valid_from + interval '1 microsecond'),
        is_current = false, run_id = :run
    FROM _src AS s
    WHERE d.customer_id = s.customer_id
      AND d.is_current
      AND (d.segment, d.country, d.region, d.city)
          IS DISTINCT FROM (s.segment, s.country, s.region, s.city)
    RETURNING d.customer_id AS natural_id, d.customer_key AS old_key, d.valid_to AS changed_at
)
INSERT INTO _closed (natural_id, old_key, changed_at)
SELECT natural_id, old_key, changed_at FROM closed;

-- name: open
INSERT INTO dw.dim_customer (customer_id, email, full_name, gender, birth_date, age_band,
                             segment, country, region, city, signup_at, valid_from, run_id)
SELECT s.customer_id, s.email, s.full_name, s.gender, s.birth_date, s.age_band,
       s.segment, s.country, s.region, s.city, s.signup_at, c.changed_at, :run
FROM _src AS s
JOIN _closed AS c ON c.natural_id = s.customer_id;

-- name: new
INSERT INTO dw.dim_customer (customer_id, email, full_name, gender, birth_date, age_band,
                             segment, country, region, city, signup_at, valid_from, run_id)
SELECT s.customer_id, s.email, s.full_name, s.gender, s.birth_date, s.age_band,
       s.segment, s.country, s.region, s.city, s.signup_at, '-infinity', :run
FROM _src AS s
WHERE NOT EXISTS (SELECT 1 FROM dw.dim_customer AS d WHERE d.customer_id = s.customer_id);
