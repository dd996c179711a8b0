-- Least privilege: one group role per kind of client, each granted only what its code runs.
--
--   sluice_worker    LoadWorkerFunction (sluice.adapters.timescale): reads systems and the ledger, claims and
--                    counts ledger rows, COPYs/INSERTs readings and quarantine rows (and counts the latter by
--                    reason), keeps a temporary staging table.
--   sluice_reviewer  QuarantineFunction (sluice.adapters.quarantine): reads and reviews quarantine rows, replays
--                    readings, keeps job_reviews, checks systems.
--   sluice_reader    HealthFunction's deep check, dashboards and analysts: SELECT on every table and view.
--
-- The roles are NOLOGIN groups: the functions log in as users that are members of one (docs/operations.md, "The
-- database roles"; `sluice serve` makes its own). The migration owner (the user running the migrations) stays the
-- owner of every object and is the only one that may change the schema, delete readings or drop chunks.
--
-- Roles belong to the cluster, not to the database, and one cluster may hold several Sluice databases (the tests
-- make one per test): each is created only when missing, and the grants below are this database's.
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['sluice_worker', 'sluice_reviewer', 'sluice_reader'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = role_name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- another database's migration created it a moment ago
            END;
        END IF;
    END LOOP;
END
$$;

-- CONNECT is PUBLIC's by default; granted here too, so the roles keep it where PUBLIC's is revoked. Only the
-- worker creates a temporary table (its staging table, sluice.adapters.timescale.create_staging_table).
DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO sluice_worker, sluice_reviewer, sluice_reader',
                   current_database());
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO sluice_worker', current_database());
END
$$;
GRANT USAGE ON SCHEMA public TO sluice_worker, sluice_reviewer, sluice_reader;

-- The worker. SELECT on readings: `CREATE TEMPORARY TABLE .. (LIKE readings)` needs it on the whole table, and the
-- staging path's `INSERT .. RETURNING sensor_id, time` reads those columns. No UPDATE, DELETE or TRUNCATE of
-- readings. Quarantine rows it appends (their identity column needs no sequence grant) and counts by reason for
-- the job record; the readings in them it cannot read back. It updates only the count columns of the ledger rows
-- it claims (ON CONFLICT DO NOTHING needs no more than INSERT).
GRANT SELECT ON systems TO sluice_worker;
GRANT SELECT, INSERT ON readings TO sluice_worker;
GRANT INSERT ON quarantined_readings TO sluice_worker;
GRANT SELECT (job_id, reason) ON quarantined_readings TO sluice_worker;
GRANT SELECT, INSERT ON ingest_ledger TO sluice_worker;
GRANT UPDATE (total_readings, inserted_readings, quarantined_readings, duplicate_readings, committed_at)
    ON ingest_ledger TO sluice_worker;

-- The reviewer. UPDATE on the review columns only: a review never changes what arrived, and `SELECT .. FOR UPDATE`
-- needs UPDATE on one column at least. The replay is `INSERT .. ON CONFLICT DO NOTHING RETURNING 1`, which reads
-- no column: INSERT alone, so the reviewer cannot read readings. job_reviews' upsert reads the counts it adds to.
GRANT SELECT ON systems TO sluice_reviewer;
GRANT SELECT ON quarantined_readings TO sluice_reviewer;
GRANT UPDATE (review_status, reviewed_by, reviewed_at, review_notes, review_correction)
    ON quarantined_readings TO sluice_reviewer;
GRANT INSERT ON readings TO sluice_reviewer;
GRANT SELECT, INSERT ON job_reviews TO sluice_reviewer;
GRANT UPDATE (reviewed_readings, replayed_readings, updated_at) ON job_reviews TO sluice_reviewer;

-- The reader: every relation of the schema, the rollup (a view or a continuous aggregate) and the migrations'
-- bookkeeping (the deep health check reads the newest version) included. Named one by one rather than with
-- default privileges, so a table that later holds something dashboards must not see is not readable by accident:
-- a migration adding a table grants it here (tests/integration/test_roles.py checks that the reader reads all).
GRANT SELECT ON systems, readings, quarantined_readings, ingest_ledger, job_reviews, readings_hourly,
    sluice_schema_migrations TO sluice_reader;
