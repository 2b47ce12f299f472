-- The id of the key a template is sealed with (templates.rs); NULL: stored in
-- clear (no key configured when it was written).
ALTER TABLE users ADD COLUMN key_id TEXT;
