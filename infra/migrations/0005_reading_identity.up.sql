-- A reading is known by its system, its sensor and its instant.
--
-- Until now the unique index was (sensor_id, time) across every tenant, and a sensor id is not tied to a tenant:
-- tenant A posting tenant B's sensor id under one of A's own systems made B's real reading at that instant a
-- "duplicate", and A could learn whether B held a reading at an instant from its own job's counts. Systems belong
-- to exactly one tenant, so a key that starts with the system keeps every tenant's readings apart.
--
-- The worker's COPY and the review's replay both rely on this index (ON CONFLICT DO NOTHING names no columns):
-- nothing else changes with it. The index also serves "one sensor of a system over time"; readings_system_time_idx
-- still serves "one system over time".
--
-- Building it reads every chunk of readings and holds a SHARE lock meanwhile: the worker's COPY waits, the API keeps
-- accepting (its batches wait in the queue). docs/operations.md, "Migrating the deployed database", says more.
CREATE UNIQUE INDEX readings_system_sensor_time_key ON readings (system_id, sensor_id, time);
DROP INDEX readings_sensor_time_key;
