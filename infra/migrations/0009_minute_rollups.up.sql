-- Rollups kept at load time: readings per system, sensor, unit and minute (readings_1m) and hour (readings_1h), and
-- each sensor's newest reading (sensor_latest). They replace readings_hourly.
--
-- Why at load time: readings_hourly was a view recomputed by every query on the Apache build, and on a
-- Timescale-licensed server a continuous aggregate refreshing only its last 3 days, so backfilled drops and replayed
-- reviews never reached it. Here the worker adds each chunk's readings to the rollups in the transaction of the
-- chunk's COPY and ledger row, and a review adds the reading it replays in the transaction of the review: a rollup
-- row holds exactly the readings stored, on either build, whenever they arrived. Only readings actually inserted
-- count (a stored duplicate adds nothing), and a redelivered chunk, found in the ledger, adds nothing again.
--
-- A rollup row's sum and count give the average; min, max and the newest value (with its time) are exact. Sums are
-- double precision added in arrival order, so they may differ from a fresh sum over the same readings in the last
-- bits. The unit is part of the key: a sensor that changed units never mixes them in one row.
--
-- readings_1h is a table (not a view over readings_1m) because a month of one system's hours from minutes reads 60
-- rows per point: about 56 ms for 20 sensors on the development machine, against 3 ms from the table. The 5 minute
-- and 1 day resolutions are views (over readings_1m and readings_1h): 5 and 24 rows per point.
--
-- Both tables are hypertables, so retention drops whole chunks (MaintenanceFunction, or a policy where the license
-- allows), and TimescaleDB orders by time_bucket(bucket) through the key's index: the views' GROUP BY streams and a
-- LIMIT stops it early.
CREATE TABLE readings_1m (
    system_id  uuid             NOT NULL,
    sensor_id  uuid             NOT NULL,
    unit       text             NOT NULL,
    bucket     timestamptz      NOT NULL,
    count      integer          NOT NULL CHECK (count > 0),
    sum        double precision NOT NULL,
    min        double precision NOT NULL,
    max        double precision NOT NULL,
    last_time  timestamptz      NOT NULL,
    last_value double precision NOT NULL,
    PRIMARY KEY (system_id, sensor_id, bucket, unit),
    CHECK (min <= max)
);
SELECT create_hypertable('readings_1m', by_range('bucket', INTERVAL '30 days'), create_default_indexes => false);

CREATE TABLE readings_1h (LIKE readings_1m INCLUDING ALL);
SELECT create_hypertable('readings_1h', by_range('bucket', INTERVAL '365 days'), create_default_indexes => false);

-- One row per system and sensor: the unit, time and value of its newest reading. Serves the sensors' list (live or
-- silent) without reading the rollups; kept with them, so it outlives the raw readings too.
CREATE TABLE sensor_latest (
    system_id  uuid             NOT NULL,
    sensor_id  uuid             NOT NULL,
    unit       text             NOT NULL,
    last_time  timestamptz      NOT NULL,
    last_value double precision NOT NULL,
    PRIMARY KEY (system_id, sensor_id)
);

CREATE VIEW readings_5m AS
SELECT system_id, sensor_id, unit, time_bucket(INTERVAL '5 minutes', bucket) AS bucket,
       sum(count)::integer AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max,
       max(last_time) AS last_time, last(last_value, last_time) AS last_value
FROM readings_1m
GROUP BY system_id, sensor_id, time_bucket(INTERVAL '5 minutes', bucket), unit;

CREATE VIEW readings_1d AS
SELECT system_id, sensor_id, unit, time_bucket(INTERVAL '1 day', bucket) AS bucket,
       sum(count) AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max,
       max(last_time) AS last_time, last(last_value, last_time) AS last_value
FROM readings_1h
GROUP BY system_id, sensor_id, time_bucket(INTERVAL '1 day', bucket), unit;

-- Readings stored before this migration. Nothing may load meanwhile (docs/operations.md, "Migration 0009": the
-- worker is paused while the migration runs and the new code deploys), so the rollups start exact.
INSERT INTO readings_1m (system_id, sensor_id, unit, bucket, count, sum, min, max, last_time, last_value)
SELECT system_id, sensor_id, unit, time_bucket(INTERVAL '1 minute', time),
       count(*), sum(value), min(value), max(value), max(time), last(value, time)
FROM readings
GROUP BY system_id, sensor_id, unit, time_bucket(INTERVAL '1 minute', time);
INSERT INTO readings_1h (system_id, sensor_id, unit, bucket, count, sum, min, max, last_time, last_value)
SELECT system_id, sensor_id, unit, time_bucket(INTERVAL '1 hour', bucket),
       sum(count), sum(sum), min(min), max(max), max(last_time), last(last_value, last_time)
FROM readings_1m
GROUP BY system_id, sensor_id, unit, time_bucket(INTERVAL '1 hour', bucket);
INSERT INTO sensor_latest (system_id, sensor_id, unit, last_time, last_value)
SELECT DISTINCT ON (system_id, sensor_id) system_id, sensor_id, unit, last_time, last_value
FROM readings_1m
ORDER BY system_id, sensor_id, last_time DESC;

-- Jobs per hour (the Grafana dashboard, infra/grafana) reads a tenant's ledger rows by commit time.
CREATE INDEX ingest_ledger_tenant_committed_idx ON ingest_ledger (tenant_id, committed_at);

-- How long a sensor of the system may stay without a reading before GET .../sensors calls it silent.
ALTER TABLE systems ADD COLUMN silent_after_seconds integer NOT NULL DEFAULT 600
    CHECK (silent_after_seconds BETWEEN 60 AND 604800);

-- The worker and the reviewer add to the rollups (ON CONFLICT DO UPDATE reads the row it updates); neither may
-- delete from them. The registrar reads the figures of the systems' list (from the rollups now) and sets the silence
-- setting; the reader reads everything, as before.
GRANT SELECT, INSERT, UPDATE ON readings_1m, readings_1h, sensor_latest TO sluice_worker, sluice_reviewer;
GRANT SELECT (system_id, bucket, count) ON readings_1m TO sluice_registrar;
-- The systems' list now reads its figures from the rollups, not from readings.
REVOKE SELECT (system_id, time) ON readings FROM sluice_registrar;
GRANT SELECT (system_id, last_time) ON sensor_latest TO sluice_registrar;
GRANT UPDATE (silent_after_seconds) ON systems TO sluice_registrar;
GRANT SELECT ON readings_1m, readings_1h, readings_5m, readings_1d, sensor_latest TO sluice_reader;

DO $$
BEGIN
    IF current_setting('timescaledb.license', true) = 'timescale' THEN
        EXECUTE 'DROP MATERIALIZED VIEW readings_hourly';
        -- MaintenanceFunction sees these policies and leaves the chunks to them (SLUICE_ROLLUP_RETENTION_YEARS is
        -- then the policies' to change: docs/operations.md).
        PERFORM add_retention_policy('readings_1m', INTERVAL '10 years');
        PERFORM add_retention_policy('readings_1h', INTERVAL '10 years');
    ELSE
        DROP VIEW readings_hourly;
    END IF;
END
$$;
