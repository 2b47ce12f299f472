-- One enrolled person: the face template only, never the uploaded image.
CREATE TABLE users (
    username      TEXT PRIMARY KEY NOT NULL,
    embedding     BLOB NOT NULL,
    model_version TEXT NOT NULL,
    enrolled_at   BIGINT NOT NULL
);
