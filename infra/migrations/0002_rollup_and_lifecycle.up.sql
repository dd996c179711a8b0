-- The hourly rollup, and compression and retention where the extension's license allows them.
--
-- Compression, policies and continuous aggregates are Timescale-licensed. With the Apache build (this machine,
-- Debian's package) the rollup is a plain view over readings and retention is done by the maintenance function
-- with drop_chunks. EXECUTE keeps the licensed statements from being planned where they cannot run.
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
        ALTER TABLE readings SET (timescaledb.compress,
            timescaledb.compress_segmentby = 'sensor_id', timescaledb.compress_orderby = 'time DESC');
        PERFORM add_compression_policy('readings', INTERVAL '7 days');
        PERFORM add_retention_policy('readings', INTERVAL '5 years');
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
