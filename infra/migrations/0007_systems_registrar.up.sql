-- The systems API (SystemsFunction, sluice.adapters.systems) gets a group role of its own, granted only what its
-- code runs:
--
--   sluice_registrar  registers and renames a tenant's systems, and reads the figures shown with each: the newest
--                     reading and the readings of the last 24 hours (readings' system_id and time), and the pending
--                     quarantined rows naming it (quarantined_readings' tenant_id, system_id and review_status).
--
-- Like migration 0004's roles it is a NOLOGIN group, created only when missing (roles are the cluster's), and the
-- function logs in as a user that is a member of it (docs/operations.md, "The database roles"). It may neither
-- delete a system nor change its id or tenant: a system's id is what its devices send, and readings name it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'sluice_registrar') THEN
        BEGIN
            CREATE ROLE sluice_registrar NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- another database's migration created it a moment ago
        END;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO sluice_registrar', current_database());
END
$$;
GRANT USAGE ON SCHEMA public TO sluice_registrar;

-- INSERT .. ON CONFLICT DO NOTHING RETURNING reads the columns it returns; the registration's checks read the
-- whole row (id, tenant, name, created_at), of whichever tenant holds a wanted id.
GRANT SELECT, INSERT ON systems TO sluice_registrar;
GRANT UPDATE (name) ON systems TO sluice_registrar;
GRANT SELECT (system_id, time) ON readings TO sluice_registrar;
GRANT SELECT (tenant_id, system_id, review_status) ON quarantined_readings TO sluice_registrar;

-- pending_quarantine per system: the pending rows of a tenant naming a page's systems. The partial index keeps
-- only pending rows, so reviewed history does not grow it (the existing pending index leads with the reason).
CREATE INDEX quarantined_readings_pending_system_idx ON quarantined_readings (tenant_id, system_id)
    WHERE review_status = 'pending';
