-- Issue 21: the parameters each decision was made under, as a hash of the
-- component's sha256 and the variant's effective parameters (usecase/decide.rs,
-- `params_hash`): a variant whose parameters change mid-experiment shows a second
-- hash in its statistics. Rows recorded before this column have '' (not known).
ALTER TABLE decisions ADD COLUMN params_hash TEXT NOT NULL DEFAULT '';
-- `GET /api/admin/decisions?request_id=`: the stats page links each request a
-- shadow disagreed on to its answer and shadow rows; without an index every
-- click read the whole log.
CREATE INDEX decisions_request_id ON decisions (request_id);
