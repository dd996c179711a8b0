DROP TABLE job_reviews;
ALTER TABLE quarantined_readings DROP COLUMN review_correction;
