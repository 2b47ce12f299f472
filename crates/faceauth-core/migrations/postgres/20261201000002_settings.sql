-- Per-database secrets shared by every replica: `pseudonym_key` keys the hash that
-- replaces an erased user's name in the audit log.
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
