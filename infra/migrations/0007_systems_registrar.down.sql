-- This database's grants and the index go; the role stays, as 0004's do (it is the cluster's: another Sluice
-- database may still grant it, and the systems API's login user is a member of it).
DROP INDEX quarantined_readings_pending_system_idx;
REVOKE ALL ON systems, readings, quarantined_readings FROM sluice_registrar;
REVOKE USAGE ON SCHEMA public FROM sluice_registrar;
DO $$
BEGIN
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM sluice_registrar', current_database());
END
$$;
