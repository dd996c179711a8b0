-- Core schema: systems, the readings hypertable, quarantine and the ingest ledger.
CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE systems (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id  text        NOT NULL CHECK (tenant_id <> ''),
    name       text        NOT NULL CHECK (name <> ''),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);

-- No foreign key to systems: the worker checks systems per batch (system_not_found), and a per-row FK check
-- would cost the COPY path on every reading.
CREATE TABLE readings (
    time      timestamptz      NOT NULL,
    system_id uuid             NOT NULL,
    sensor_id uuid             NOT NULL,
    value     double precision NOT NULL,
    unit      text             NOT NULL CHECK (unit IN ('bar', 'celsius', 'lpm', 'rpm')),
    quality   smallint         NOT NULL CHECK (quality BETWEEN 0 AND 100),
    job_id    uuid             NOT NULL
);

-- create_default_indexes => false: the default (time DESC) index costs about a third of COPY throughput and no
-- query we serve needs it; the two indexes below serve "one sensor over time" and "one system over time".
SELECT create_hypertable('readings', by_range('time', INTERVAL '7 days'), create_default_indexes => false);
CREATE UNIQUE INDEX readings_sensor_time_key ON readings (sensor_id, time);
CREATE INDEX readings_system_time_idx ON readings (system_id, time DESC);

CREATE TABLE quarantined_readings (
    id             bigint           GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id      text             NOT NULL,
    job_id         uuid             NOT NULL,
    -- Where the reading sat in its batch: array index (JSON) or line number (NDJSON, CSV).
    position       integer          CHECK (position >= 0),
    -- The reading's fields as far as they could be read; NULL when missing or unreadable.
    system_id      uuid,
    sensor_id      uuid,
    time           timestamptz,
    value          double precision,
    unit           text,
    quality        smallint,
    raw            jsonb,
    reason         text             NOT NULL CHECK (reason IN (
                       'invalid_unit', 'out_of_range', 'low_quality', 'invalid_timestamp',
                       'system_not_found', 'duplicate', 'parse_error')),
    reason_details jsonb            NOT NULL DEFAULT '{}'::jsonb,
    review_status  text             NOT NULL DEFAULT 'pending'
                       CHECK (review_status IN ('pending', 'approved', 'rejected', 'fixed')),
    reviewed_by    text,
    reviewed_at    timestamptz,
    review_notes   text,
    quarantined_at timestamptz      NOT NULL DEFAULT now(),
    -- A reviewed row always says who reviewed it and when; a pending one never does.
    CONSTRAINT quarantined_readings_review_recorded CHECK (
        (review_status = 'pending' AND reviewed_by IS NULL AND reviewed_at IS NULL)
        OR (review_status <> 'pending' AND reviewed_by IS NOT NULL AND reviewed_at IS NOT NULL))
);
-- Keyset pagination per tenant (newest first) and the filters of GET /api/v1/quarantine.
CREATE INDEX quarantined_readings_tenant_id_idx ON quarantined_readings (tenant_id, id DESC);
CREATE INDEX quarantined_readings_job_idx ON quarantined_readings (job_id, id);
CREATE INDEX quarantined_readings_pending_idx ON quarantined_readings (tenant_id, reason, id DESC)
    WHERE review_status = 'pending';

-- One row per committed chunk, written in the chunk's own transaction: a redelivered message skips the chunks
-- found here, and a job's counts are the sum of its rows (never increments).
CREATE TABLE ingest_ledger (
    job_id               uuid        NOT NULL,
    chunk_no             integer     NOT NULL CHECK (chunk_no >= 0),
    tenant_id            text        NOT NULL,
    total_readings       integer     NOT NULL DEFAULT 0 CHECK (total_readings >= 0),
    inserted_readings    integer     NOT NULL DEFAULT 0 CHECK (inserted_readings >= 0),
    quarantined_readings integer     NOT NULL DEFAULT 0 CHECK (quarantined_readings >= 0),
    duplicate_readings   integer     NOT NULL DEFAULT 0 CHECK (duplicate_readings >= 0),
    committed_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, chunk_no),
    CONSTRAINT ingest_ledger_counts_add_up CHECK (
        total_readings = inserted_readings + quarantined_readings
        AND duplicate_readings <= quarantined_readings)
);
