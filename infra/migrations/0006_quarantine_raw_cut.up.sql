-- A quarantined reading keeps at most 16 KiB of what arrived (sluice.limits.MAX_RAW_BYTES, counted as the JSON text
-- of raw). A longer one (a line of a gigabyte in a small .gz, a CSV row of millions of columns) keeps a JSON string
-- of its start in raw, and these two columns say that it was cut: the size of the whole in UTF-8 bytes and its
-- SHA-256, so a reviewer can tell and can find the line in the file. Both are NULL for a row kept whole, which every
-- row written before this migration is.
--
-- bigint: a line can be longer than 2 GiB (a 4 GiB line gzips to about 4 MB).
ALTER TABLE quarantined_readings
    ADD COLUMN raw_bytes bigint CHECK (raw_bytes > 0),
    ADD COLUMN raw_sha256 text CHECK (raw_sha256 ~ '^[0-9a-f]{64}$'),
    ADD CONSTRAINT quarantined_readings_raw_cut_described CHECK ((raw_bytes IS NULL) = (raw_sha256 IS NULL));
