-- Model registry (issue 6): versions of the three prediction models, exported to ONNX.
--
-- One row per trained version. At most one version per model name is active (partial
-- unique index). Activating a version is one statement that switches the flags
-- (ml.activate_model); the trigger below NOTIFYs `cdms_model_activated` so every serving
-- process swaps its onnxruntime session without a restart. The ONNX bytes are also
-- validated in Python before activation (they must load and match the spec's inputs);
-- the database itself guarantees that an active version's sha256 matches its bytes.

CREATE TABLE ml.model_version (
    name                 text        NOT NULL CHECK (name ~ '^[a-z][a-z0-9_]*$'),
    version              integer     NOT NULL CHECK (version > 0),
    algorithm            text        NOT NULL,
    onnx                 bytea       NOT NULL,
    sha256               text        NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    features             jsonb       NOT NULL CHECK (jsonb_typeof(features) = 'array'),
    classes              jsonb       CHECK (classes IS NULL OR jsonb_typeof(classes) = 'array'),
    metrics              jsonb       NOT NULL CHECK (jsonb_typeof(metrics) = 'object'),
    feature_importances  jsonb       CHECK (feature_importances IS NULL
                                            OR jsonb_typeof(feature_importances) = 'array'),
    train_from           timestamptz,
    train_until          timestamptz,
    test_until           timestamptz,
    row_count            integer     NOT NULL CHECK (row_count >= 0),
    test_row_count       integer     NOT NULL CHECK (test_row_count >= 0),
    trained_at           timestamptz NOT NULL DEFAULT now(),
    active               boolean     NOT NULL DEFAULT false,
    activated_at         timestamptz,
    PRIMARY KEY (name, version),
    CHECK (train_from IS NULL OR train_until IS NULL OR train_from <= train_until)
);
COMMENT ON TABLE ml.model_version IS
    'Grain: one row per trained model version. features: [{"name", "kind": numeric|category}] '
    'in the ONNX input order; classes: the classifier''s labels in probability order (NULL for '
    'a regressor); metrics: evaluation on the newest 20% (time split); train_from/train_until: '
    'event times of the training rows, test_until: of the newest evaluation row.';
CREATE UNIQUE INDEX model_version_one_active ON ml.model_version (name) WHERE active;

-- Activation: the sha256 of an active version must match its bytes; NOTIFY every listener.
CREATE FUNCTION ml.model_activated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.sha256 <> encode(sha256(NEW.onnx), 'hex') THEN
        RAISE EXCEPTION USING ERRCODE = 'CD004',
            MESSAGE = format('model %s version %s: sha256 does not match its ONNX bytes',
                             NEW.name, NEW.version),
            DETAIL = json_build_object('field', 'sha256', 'reason', 'mismatch',
                                       'name', NEW.name, 'version', NEW.version)::text;
    END IF;
    NEW.activated_at := now();
    PERFORM pg_notify('cdms_model_activated',
                      json_build_object('name', NEW.name, 'version', NEW.version)::text);
    RETURN NEW;
END;
$$;
CREATE TRIGGER model_version_activated
    BEFORE INSERT OR UPDATE OF active ON ml.model_version
    FOR EACH ROW WHEN (NEW.active) EXECUTE FUNCTION ml.model_activated();

-- Make one version the active one of its model (the previous one is deactivated first).
CREATE FUNCTION ml.activate_model(p_name text, p_version integer) RETURNS ml.model_version
LANGUAGE plpgsql AS $$
DECLARE
    v_row ml.model_version;
BEGIN
    -- serialise activations of one model
    PERFORM pg_advisory_xact_lock(hashtext('cdms_model:' || p_name));
    IF NOT EXISTS (SELECT 1 FROM ml.model_version WHERE name = p_name AND version = p_version)
    THEN
        RAISE EXCEPTION USING ERRCODE = 'CD003',
            MESSAGE = format('no model %s version %s', p_name, p_version),
            DETAIL = json_build_object('entity', 'model_version',
                                       'id', p_name || ':' || p_version)::text;
    END IF;
    UPDATE ml.model_version SET active = false
    WHERE name = p_name AND active AND version <> p_version;
    UPDATE ml.model_version SET active = true
    WHERE name = p_name AND version = p_version
    RETURNING * INTO v_row;
    RETURN v_row;
END;
$$;
COMMENT ON FUNCTION ml.activate_model(text, integer) IS
    'Activate one version of a model (deactivating the previous one); NOTIFYs cdms_model_activated.';

-- Feature queries read a customer's earlier events by natural id and time (dw facts carry
-- customer_id beside the version key); these indexes keep a batch of 500 objects cheap.
CREATE INDEX ml_fact_orders_customer_time ON dw.fact_orders (customer_id, ordered_at);
CREATE INDEX ml_fact_returns_customer_time ON dw.fact_returns (customer_id, requested_at);
CREATE INDEX ml_fact_support_customer_time ON dw.fact_support (customer_id, opened_at);
