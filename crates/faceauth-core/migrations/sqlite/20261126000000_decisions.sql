-- The audit log: every policy decision (the answering variant and each shadow),
-- with the evidence it was given (measurements only, never an image).
CREATE TABLE decisions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id  TEXT NOT NULL,
    at          BIGINT NOT NULL,
    username    TEXT NOT NULL,
    endpoint    TEXT NOT NULL,
    variant     TEXT NOT NULL,
    policy      TEXT NOT NULL,
    shadow      INTEGER NOT NULL,
    approved    INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    score       REAL,
    evidence    TEXT NOT NULL,
    analysis_ms REAL NOT NULL,
    policy_ms   REAL NOT NULL,
    total_ms    REAL NOT NULL
);
CREATE INDEX decisions_at ON decisions (at);
CREATE INDEX decisions_variant_at ON decisions (variant, at);
