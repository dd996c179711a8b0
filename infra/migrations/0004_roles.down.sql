-- This database's grants go; the roles stay. Roles belong to the whole cluster: another Sluice database on it (a
-- second deployment, the tests' scratch databases) may still grant them, and the login users the functions connect
-- as are members of them. DROP ROLE would fail while any database holds a grant to the role, or take those users'
-- access with it; dropping them is an operator's decision (docs/operations.md, "The database roles").
REVOKE ALL ON systems, readings, quarantined_readings, ingest_ledger, job_reviews, readings_hourly,
    sluice_schema_migrations FROM sluice_worker, sluice_reviewer, sluice_reader;
REVOKE USAGE ON SCHEMA public FROM sluice_worker, sluice_reviewer, sluice_reader;
DO $$
BEGIN
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM sluice_worker, sluice_reviewer, sluice_reader',
                   current_database());
END
$$;
