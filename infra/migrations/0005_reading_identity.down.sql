-- Back to one reading per sensor and instant across every system. Since the up migration two systems may each hold
-- a reading of the same sensor id at the same instant; the old index cannot hold both, and deleting one would lose
-- a tenant's data, so the down migration refuses (and changes nothing) until someone decides which to keep.
DO $$
DECLARE
    clashes bigint;
BEGIN
    SELECT count(*) INTO clashes
    FROM (SELECT 1 FROM readings GROUP BY sensor_id, time HAVING count(*) > 1) AS clashing;
    IF clashes > 0 THEN
        RAISE EXCEPTION 'cannot restore the unique index on readings (sensor_id, time): % sensor instants are held by more than one system', clashes
            USING HINT = 'Find them with: SELECT sensor_id, time FROM readings GROUP BY 1, 2 HAVING count(*) > 1';
    END IF;
END
$$;
CREATE UNIQUE INDEX readings_sensor_time_key ON readings (sensor_id, time);
DROP INDEX readings_system_sensor_time_key;
