-- Back to readings_hourly (as migration 0002 made it, on either build); the rollups and the silence setting go.
DROP VIEW readings_1d;
DROP VIEW readings_5m;
DROP TABLE sensor_latest;
DROP TABLE readings_1h;
DROP TABLE readings_1m;
DROP INDEX ingest_ledger_tenant_committed_idx;
GRANT SELECT (system_id, time) ON readings TO sluice_registrar;
-- A dropped column keeps its grants in the catalogue: revoked first.
REVOKE UPDATE (silent_after_seconds) ON systems FROM sluice_registrar;
ALTER TABLE systems DROP COLUMN silent_after_seconds;

DO $$
BEGIN
    IF current_setting('timescaledb.license', true) = 'timescale' THEN
        EXECUTE $sql$
            CREATE MATERIALIZED VIEW readings_hourly WITH (timescaledb.continuous) AS
            SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
                   system_id, sensor_id, unit,
                   count(*) AS readings, avg(value) AS avg_value,
                   min(value) AS min_value, max(value) AS max_value, avg(quality) AS avg_quality
            FROM readings
            GROUP BY bucket, system_id, sensor_id, unit
            WITH NO DATA
        $sql$;
        PERFORM add_continuous_aggregate_policy('readings_hourly',
            start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
            schedule_interval => INTERVAL '30 minutes');
    ELSE
        CREATE VIEW readings_hourly AS
        SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
               system_id, sensor_id, unit,
               count(*) AS readings, avg(value) AS avg_value,
               min(value) AS min_value, max(value) AS max_value, avg(quality) AS avg_quality
        FROM readings
        GROUP BY bucket, system_id, sensor_id, unit;
    END IF;
END
$$;
GRANT SELECT ON readings_hourly TO sluice_reader;
