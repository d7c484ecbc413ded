-- The call log and everything persisted, as in the SQLite store's migrations 1 to 5.
-- Text that is compared or ordered uses the "C" collation (byte order, as SQLite), so ids sort
-- the same on both backends whatever the database's locale.
CREATE TABLE calls (
    id TEXT COLLATE "C" PRIMARY KEY,
    ts_ms BIGINT NOT NULL,
    endpoint TEXT NOT NULL,
    model TEXT COLLATE "C" NOT NULL,
    upstream TEXT,
    status TEXT NOT NULL,
    http_status BIGINT,
    stream BOOLEAN NOT NULL,
    latency_us BIGINT,
    ttft_us BIGINT,
    overhead_us BIGINT,
    prompt_tokens BIGINT,
    completion_tokens BIGINT,
    agent TEXT,
    episode TEXT,
    api_key_id TEXT,
    tags JSONB NOT NULL DEFAULT '{}',
    source TEXT NOT NULL,
    -- Sealed payload: AES-256-GCM ciphertext; the database never sees plaintext.
    key_id TEXT NOT NULL,
    nonce BYTEA NOT NULL,
    payload BYTEA NOT NULL
);
CREATE INDEX calls_ts ON calls(ts_ms, id);
CREATE INDEX calls_model ON calls(model, ts_ms);

CREATE TABLE api_keys (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    key_hash BYTEA NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    agent TEXT,
    created_ms BIGINT NOT NULL,
    revoked_ms BIGINT
);

CREATE TABLE audit (
    id TEXT COLLATE "C" PRIMARY KEY,
    ts_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    detail TEXT
);
CREATE INDEX audit_ts ON audit(ts_ms, id);

CREATE TABLE datasets (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_ms BIGINT NOT NULL,
    examples BIGINT NOT NULL,
    params TEXT NOT NULL,
    report TEXT NOT NULL
);
CREATE TABLE dataset_examples (
    dataset_id TEXT COLLATE "C" NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    call_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    nonce BYTEA NOT NULL,
    payload BYTEA NOT NULL,
    PRIMARY KEY (dataset_id, seq)
);

CREATE TABLE task_assignments (
    call_id TEXT COLLATE "C" PRIMARY KEY,
    task_id TEXT COLLATE "C" NOT NULL
);
CREATE INDEX task_assignments_task ON task_assignments(task_id);

CREATE TABLE tasks (
    id TEXT COLLATE "C" PRIMARY KEY,
    label TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    calls BIGINT NOT NULL,
    signature TEXT NOT NULL,
    stats TEXT NOT NULL,
    centroid BYTEA NOT NULL
);

CREATE TABLE task_policies (
    task TEXT COLLATE "C" PRIMARY KEY,
    mode TEXT NOT NULL,
    specialist TEXT,
    min_confidence DOUBLE PRECISION,
    agreement_threshold DOUBLE PRECISION NOT NULL,
    window_size BIGINT NOT NULL,
    shadow_sample DOUBLE PRECISION NOT NULL,
    updated_ms BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);
CREATE TABLE agreement (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task TEXT COLLATE "C" NOT NULL,
    ts_ms BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    source TEXT NOT NULL,
    call_id TEXT NOT NULL,
    specialist TEXT
);
CREATE INDEX agreement_task ON agreement(task, seq);
CREATE TABLE route_events (
    id TEXT COLLATE "C" PRIMARY KEY,
    task TEXT COLLATE "C" NOT NULL,
    ts_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX route_events_task ON route_events(task, ts_ms);
CREATE INDEX route_events_ts ON route_events(ts_ms);
