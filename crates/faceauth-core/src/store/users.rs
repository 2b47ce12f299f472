//! Enrolled users' templates: insert, look up, re-seal under the current key, count.
//! The sealing itself is in `sealing`; look-alike usernames in `usernames`.

use sqlx::Row;

use super::gallery::{self, GalleryLock};
use super::{StoreError, UserStore, bounded, now_ms, sealing, usernames};
use crate::vision::FaceEmbedding;

/// A stored face template.
#[derive(Debug, Clone)]
pub struct EnrolledUser {
    pub username: String,
    pub embedding: FaceEmbedding,
    pub model_version: String,
    pub enrolled_at_ms: i64,
}

impl UserStore {
    /// Whether templates are sealed at rest (keys configured).
    pub fn seals_templates(&self) -> bool {
        self.keys.is_some()
    }

    /// Inserts a new user (`insert_under` its own gallery lock).
    pub async fn insert(
        &self,
        username: &str,
        embedding: &FaceEmbedding,
        model_version: &str,
    ) -> Result<(), StoreError> {
        let mut lock = self.lock_gallery().await?;
        self.insert_under(&mut lock, username, embedding, model_version).await?;
        lock.commit().await
    }

    /// Inserts a new user under the gallery lock (with the change row that tells
    /// every replica's index); a username taken (even by a concurrent request) is
    /// `DuplicateUsername`, decided by the primary key, not by a prior read; a
    /// username that looks like an enrolled one is `ConfusableUsername`, decided by
    /// the unique index of skeletons. Written when `lock` is committed on
    /// PostgreSQL, at once on SQLite.
    pub async fn insert_under(
        &self,
        lock: &mut GalleryLock,
        username: &str,
        embedding: &FaceEmbedding,
        model_version: &str,
    ) -> Result<(), StoreError> {
        let now_ms = now_ms();
        let (template, key_id) = self.seal(username, model_version, &embedding.to_bytes())?;
        let gallery_id = gallery::new_gallery_id();
        bounded(self.timeout, async {
            let mut own_tx = None;
            let conn: &mut sqlx::AnyConnection = match lock.transaction() {
                Some(tx) => tx,
                None => &mut *own_tx.insert(self.pool.begin().await?),
            };
            let result = sqlx::query(
                "INSERT INTO users (username, embedding, model_version, enrolled_at, key_id, skeleton, gallery_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(username)
            .bind(template)
            .bind(model_version)
            .bind(now_ms)
            .bind(key_id)
            .bind(usernames::skeleton(username))
            .bind(gallery_id)
            .execute(&mut *conn)
            .await;
            match result {
                Ok(_) => {}
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Err(self.taken(username).await?),
                Err(e) => return Err(e.into()),
            }
            sqlx::query("INSERT INTO gallery_changes (gallery_id, enrolled, at) VALUES ($1, 1, $2)")
                .bind(gallery_id)
                .bind(now_ms)
                .execute(&mut *conn)
                .await?;
            if let Some(tx) = own_tx {
                tx.commit().await?;
            }
            Ok(())
        })
        .await
    }

    pub async fn find(&self, username: &str) -> Result<Option<EnrolledUser>, StoreError> {
        let query = sqlx::query(
            "SELECT username, embedding, model_version, enrolled_at, key_id FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool);
        let row = bounded(self.timeout, async { Ok(query.await?) }).await?;
        let Some(row) = row else { return Ok(None) };
        let model_version: String = row.try_get("model_version")?;
        let bytes = self.open(username, &model_version, row.try_get("key_id")?, row.try_get("embedding")?)?;
        let embedding =
            FaceEmbedding::from_bytes(&bytes).ok_or_else(|| StoreError::CorruptTemplate(username.to_string()))?;
        Ok(Some(EnrolledUser {
            username: row.try_get("username")?,
            embedding,
            model_version,
            enrolled_at_ms: row.try_get("enrolled_at")?,
        }))
    }

    /// A template as stored: sealed under the current key, or in clear without keys.
    fn seal(
        &self,
        username: &str,
        model_version: &str,
        template: &[u8],
    ) -> Result<(Vec<u8>, Option<String>), StoreError> {
        match &self.keys {
            Some(keys) => {
                let sealed = keys
                    .seal(username, model_version, template)
                    .map_err(|source| StoreError::SealedTemplate { username: username.into(), source })?;
                Ok((sealed, Some(keys.current().to_string())))
            }
            None => Ok((template.to_vec(), None)),
        }
    }

    /// A stored template's bytes, opened with its key when it has one.
    pub(super) fn open(
        &self,
        username: &str,
        model_version: &str,
        key_id: Option<String>,
        stored: Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        let Some(key_id) = key_id else { return Ok(stored) };
        let sealed = |source| StoreError::SealedTemplate { username: username.into(), source };
        let keys = self.keys.as_ref().ok_or_else(|| sealed(sealing::TemplateError::UnknownKey(key_id.clone())))?;
        keys.open(&key_id, username, model_version, &stored).map_err(sealed)
    }

    /// Re-seals every template that is not under the current key (in clear, or
    /// under an older key) with the current key; returns how many. A row is
    /// rewritten only if it is unchanged since it was read.
    pub async fn rekey(&self) -> Result<u64, StoreError> {
        let Some(keys) = &self.keys else { return Ok(0) };
        let current = keys.current().to_string();
        let rows =
            sqlx::query("SELECT username, embedding, model_version, key_id FROM users").fetch_all(&self.pool).await?;
        let mut rewritten = 0;
        for row in rows {
            let key_id: Option<String> = row.try_get("key_id")?;
            if key_id.as_deref() == Some(current.as_str()) {
                continue;
            }
            let (username, model_version): (String, String) = (row.try_get("username")?, row.try_get("model_version")?);
            let stored: Vec<u8> = row.try_get("embedding")?;
            let template = self.open(&username, &model_version, key_id.clone(), stored.clone())?;
            let (sealed, new_id) = self.seal(&username, &model_version, &template)?;
            let updated =
                sqlx::query("UPDATE users SET embedding = $1, key_id = $2 WHERE username = $3 AND embedding = $4")
                    .bind(sealed)
                    .bind(new_id)
                    .bind(&username)
                    .bind(stored)
                    .execute(&self.pool)
                    .await?;
            rewritten += updated.rows_affected();
        }
        Ok(rewritten)
    }

    pub async fn count(&self) -> Result<i64, StoreError> {
        bounded(self.timeout, async {
            Ok(sqlx::query("SELECT COUNT(*) AS n FROM users").fetch_one(&self.pool).await?.try_get("n")?)
        })
        .await
    }
}
