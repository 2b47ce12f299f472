-- The reservation (`attempts.id`) a decision was recorded for: the reservation
-- stops counting in the statement that records its decision (one statement: no
-- transaction to be left half-open when the disk is full).
ALTER TABLE decisions ADD COLUMN attempt_id BIGINT;
CREATE INDEX decisions_attempt_id ON decisions (attempt_id) WHERE attempt_id IS NOT NULL;
