DROP TABLE IF EXISTS ingest_ledger;
DROP TABLE IF EXISTS quarantined_readings;
DROP TABLE IF EXISTS readings;
DROP TABLE IF EXISTS systems;
DROP EXTENSION IF EXISTS timescaledb;
