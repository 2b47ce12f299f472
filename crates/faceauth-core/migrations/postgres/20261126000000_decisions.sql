-- The audit log: every policy decision (the answering variant and each shadow),
-- with the evidence it was given (measurements only, never an image).
CREATE TABLE decisions (
    id          BIGSERIAL PRIMARY KEY,
    request_id  TEXT NOT NULL,
    at          BIGINT NOT NULL,
    username    TEXT NOT NULL,
    endpoint    TEXT NOT NULL,
    variant     TEXT NOT NULL,
    policy      TEXT NOT NULL,
    shadow      INTEGER NOT NULL,
    approved    INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    score       DOUBLE PRECISION,
    evidence    TEXT NOT NULL,
    analysis_ms DOUBLE PRECISION NOT NULL,
    policy_ms   DOUBLE PRECISION NOT NULL,
    total_ms    DOUBLE PRECISION NOT NULL
);
CREATE INDEX decisions_at ON decisions (at);
CREATE INDEX decisions_variant_at ON decisions (variant, at);
