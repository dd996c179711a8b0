-- Rows that were cut keep the start of their raw text; only the size and hash of the whole are lost.
ALTER TABLE quarantined_readings
    DROP CONSTRAINT quarantined_readings_raw_cut_described,
    DROP COLUMN raw_sha256,
    DROP COLUMN raw_bytes;
