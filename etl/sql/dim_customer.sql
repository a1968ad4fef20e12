-- dim_customer: SCD type 2 on segment, country, region, city; the rest is type 1.
-- Parameters: :lo, :hi - the change window [lo, hi) on app.customers.updated_at.
-- The runner adds the re-key statements for the facts (etl/steps.py declares them).

-- name: stage
CREATE TEMP TABLE _src ON COMMIT DROP AS
SELECT c.id AS customer_id,
       c.email,
       c.first_name || ' ' || c.last_name AS full_name,
       c.gender,
       c.birth_date,
       CASE
           WHEN a.age IS NULL THEN 'unknown'
           WHEN a.age < 18 THEN 'under 18'
           WHEN a.age < 25 THEN '18-24'
           WHEN a.age < 35 THEN '25-34'
           WHEN a.age < 45 THEN '35-44'
           WHEN a.age < 55 THEN '45-54'
           WHEN a.age < 65 THEN '55-64'
           ELSE '65+'
       END AS age_band,
       c.segment,
       c.country,
       c.region,
       c.city,
       c.signup_at,
       c.updated_at
FROM app.customers AS c
CROSS JOIN LATERAL (
    SELECT EXTRACT(YEAR FROM age((c.signup_at AT TIME ZONE 'UTC')::date, c.birth_date))::int AS age
) AS a
WHERE c.updated_at >= :lo AND c.updated_at < :hi;

-- name: type1
UPDATE dw.dim_customer AS d
SET email = s.email, full_name = s.full_name, gender = s.gender, birth_date = s.birth_date,
    age_band = s.age_band, signup_at = s.signup_at
FROM _src AS s
WHERE d.customer_id = s.customer_id
  AND (d.email, d.full_name, d.gender, d.birth_date, d.age_band, d.signup_at)
      IS DISTINCT FROM (s.email, s.full_name, s.gender, s.birth_date, s.age_band, s.signup_at);

-- name: close
-- The current version ends when the source row last changed (never before it began).
WITH closed AS (
    UPDATE dw.dim_customer AS d
    SET valid_to = greatest(s.updated_at, d.valid_from + interval '1 microsecond'),
        is_current = false
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
                             segment, country, region, city, signup_at, valid_from)
SELECT s.customer_id, s.email, s.full_name, s.gender, s.birth_date, s.age_band,
       s.segment, s.country, s.region, s.city, s.signup_at, c.changed_at
FROM _src AS s
JOIN _closed AS c ON c.natural_id = s.customer_id;

-- name: new
INSERT INTO dw.dim_customer (customer_id, email, full_name, gender, birth_date, age_band,
                             segment, country, region, city, signup_at, valid_from)
SELECT s.customer_id, s.email, s.full_name, s.gender, s.birth_date, s.age_band,
       s.segment, s.country, s.region, s.city, s.signup_at, '-infinity'
FROM _src AS s
WHERE NOT EXISTS (SELECT 1 FROM dw.dim_customer AS d WHERE d.customer_id = s.customer_id);
