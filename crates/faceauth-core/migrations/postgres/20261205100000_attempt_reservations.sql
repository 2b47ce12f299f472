-- Attempt limit (issue 22): an authentication reserves its attempt here, under a
-- per-username lock, before its analysis; concurrent attempts beyond the limit are
-- refused instead of all passing one count. The row goes when the decision is
-- recorded or the request ends without one; a row older than the reservation TTL
-- (a crashed process) no longer counts and is deleted by the next reservation.
CREATE TABLE attempts (
    id       BIGSERIAL PRIMARY KEY,
    username TEXT NOT NULL,
    at       BIGINT NOT NULL
);
CREATE INDEX attempts_username_at ON attempts (username, at);
CREATE INDEX attempts_at ON attempts (at);

-- Whether a decision counts against the attempt limit: an authentication the policy
-- refused although its evidence showed a face (a guess). A picture without a face
-- and a server failure do not count (issue 22: five blank PNGs locked a user out).
ALTER TABLE decisions ADD COLUMN counts_as_attempt INTEGER NOT NULL DEFAULT 0;
-- Older rows have no face count at hand: refusals other than NO_FACE_DETECTED count,
-- over the longest attempt window (a day); older rows never count again anyway.
UPDATE decisions SET counts_as_attempt = 1
WHERE endpoint = 'authenticate' AND shadow = 0 AND approved = 0 AND error IS NULL
    AND reason <> 'NO_FACE_DETECTED' AND at >= CAST(extract(epoch FROM now()) AS BIGINT) * 1000 - 86400000;
