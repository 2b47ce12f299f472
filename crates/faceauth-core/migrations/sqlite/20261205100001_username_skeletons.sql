-- The UTS #39 confusable skeleton of the username (issue 22): two names with one
-- skeleton look alike, and the index lets only one of them be enrolled. Rows
-- enrolled before this column get theirs from the server at start-up (the oldest of
-- a look-alike group keeps it; the others keep NULL, which the index allows).
ALTER TABLE users ADD COLUMN skeleton TEXT;
CREATE UNIQUE INDEX users_skeleton ON users (skeleton);
