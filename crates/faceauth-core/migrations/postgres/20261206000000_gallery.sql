-- Duplicate search (issue 20): each template's key in the in-memory search index
-- (a random number, never the name), and the changes every replica's index follows.
-- A change row names no one: an erased user's row keeps only the number.
ALTER TABLE users ADD COLUMN gallery_id BIGINT;
UPDATE users SET gallery_id = floor(random() * 9.0e15)::BIGINT + 1 WHERE gallery_id IS NULL;
CREATE UNIQUE INDEX users_gallery_id ON users (gallery_id);
-- Written only under the advisory lock of enrollments (see store/gallery.rs), so
-- rows commit in `seq` order and a replica reading `seq > last` misses none.
CREATE TABLE gallery_changes (
    seq        BIGSERIAL PRIMARY KEY,
    gallery_id BIGINT NOT NULL,
    enrolled   BIGINT NOT NULL, -- 1 enrolled, 0 erased
    at         BIGINT NOT NULL
);
-- Admin searches (POST /api/admin/search): when, over how many templates, how many
-- results and the best similarity; no image and no name.
CREATE TABLE admin_searches (
    at               BIGINT NOT NULL,
    request_id       TEXT NOT NULL,
    gallery_size     BIGINT NOT NULL,
    results          BIGINT NOT NULL,
    best_similarity  DOUBLE PRECISION
);
