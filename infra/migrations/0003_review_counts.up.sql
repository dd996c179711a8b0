-- Review: what a fix changed, and each job's review counts, kept in the same transaction as every review.

-- The reading's own columns keep what arrived; a fix's corrections (value, unit, timestamp) are recorded here.
ALTER TABLE quarantined_readings ADD COLUMN review_correction jsonb;

-- One row per job with reviewed readings. Written in the review's own transaction, so the counts are exact
-- however many reviewers work at once; QuarantineFunction copies them onto the job record in DynamoDB.
CREATE TABLE job_reviews (
    job_id            uuid        PRIMARY KEY,
    tenant_id         text        NOT NULL,
    reviewed_readings integer     NOT NULL DEFAULT 0 CHECK (reviewed_readings >= 0),
    replayed_readings integer     NOT NULL DEFAULT 0 CHECK (replayed_readings >= 0),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT job_reviews_replayed_were_reviewed CHECK (replayed_readings <= reviewed_readings)
);
