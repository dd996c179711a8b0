-- GET /api/v1/quarantine?sensor_id= and a bulk review's filter by sensor: one sensor's rows of a tenant, newest
-- first. Without this the (tenant_id, id DESC) index walks the tenant's every row until a page of that sensor's is
-- found, which for a rare sensor of a large tenant is all of them. A row whose sensor id could not be read (most
-- parse errors) matches no sensor filter, so the partial index leaves those out.
CREATE INDEX quarantined_readings_tenant_sensor_idx ON quarantined_readings (tenant_id, sensor_id, id DESC)
    WHERE sensor_id IS NOT NULL;
