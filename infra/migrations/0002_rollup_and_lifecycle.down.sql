DO $$
BEGIN
    IF current_setting('timescaledb.license', true) = 'timescale' THEN
        PERFORM remove_retention_policy('readings', if_exists => true);
        PERFORM remove_compression_policy('readings', if_exists => true);
        EXECUTE 'DROP MATERIALIZED VIEW IF EXISTS readings_hourly';
        -- Compressed chunks must be decompressed before compression can be switched off.
        PERFORM decompress_chunk(c, if_compressed => true) FROM show_chunks('readings') AS c;
        ALTER TABLE readings SET (timescaledb.compress = false);
    ELSE
        DROP VIEW IF EXISTS readings_hourly;
    END IF;
END
$$;
