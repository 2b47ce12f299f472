//! The store's side of duplicate search (issue 20): every template by its gallery
//! key (a random number, never the name), the changes since a point in the change
//! sequence, and the lock under which an enrollment is searched and stored.
//!
//! Every writer of `gallery_changes` (enrollment, erasure, reset) holds the gallery
//! lock until it commits: on PostgreSQL a transaction-level advisory lock, so that
//! two replicas enrolling the same face at once are searched one after the other and
//! the change rows commit in `seq` order (a replica reading `seq > last` misses
//! none); on SQLite the database's single writer gives the order and the use case's
//! in-process lock the one-after-the-other.

use sqlx::Row;

use super::{Backend, StoreError, UserStore, bounded, now_ms};
use crate::vision::FaceEmbedding;

/// The advisory lock key of gallery changes ("faceauth" in ASCII).
const GALLERY_LOCK: i64 = 0x6661_6365_6175_7468;

/// One change to the set of enrolled templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GalleryChange {
    pub seq: i64,
    pub gallery_id: i64,
    /// Enrolled (`true`) or erased.
    pub enrolled: bool,
}

/// A template with its gallery key.
#[derive(Debug, Clone)]
pub struct GalleryTemplate {
    pub gallery_id: i64,
    pub embedding: FaceEmbedding,
}

/// Held while an enrollment is searched, decided and stored: on PostgreSQL an open
/// transaction holding the advisory lock (released by its commit, or by the
/// rollback when it is dropped); on SQLite nothing.
pub struct GalleryLock {
    tx: Option<sqlx::Transaction<'static, sqlx::Any>>,
}

impl GalleryLock {
    /// The locked transaction (PostgreSQL), where the enrollment is written.
    pub(super) fn transaction(&mut self) -> Option<&mut sqlx::AnyConnection> {
        self.tx.as_deref_mut()
    }

    /// Commits what was written under the lock and releases it.
    pub async fn commit(self) -> Result<(), StoreError> {
        if let Some(tx) = self.tx {
            tx.commit().await?;
        }
        Ok(())
    }
}

impl UserStore {
    /// Takes the gallery lock (PostgreSQL; waits at most the lock timeout).
    pub async fn lock_gallery(&self) -> Result<GalleryLock, StoreError> {
        match self.backend() {
            Backend::Sqlite => Ok(GalleryLock { tx: None }),
            Backend::Postgres => {
                bounded(self.timeout, async {
                    let mut tx = self.pool.begin().await?;
                    lock_in(&mut tx).await?;
                    Ok(GalleryLock { tx: Some(tx) })
                })
                .await
            }
        }
    }

    /// The last change's `seq` (0 when there is none).
    pub async fn last_gallery_change(&self) -> Result<i64, StoreError> {
        bounded(self.timeout, async {
            let row =
                sqlx::query("SELECT COALESCE(MAX(seq), 0) AS seq FROM gallery_changes").fetch_one(&self.pool).await?;
            Ok(row.try_get::<i64, _>("seq")?)
        })
        .await
    }

    /// Changes after `seq`, in order, at most `limit`.
    pub async fn gallery_changes(&self, after: i64, limit: i64) -> Result<Vec<GalleryChange>, StoreError> {
        bounded(self.timeout, async {
            let rows = sqlx::query(
                "SELECT seq, gallery_id, enrolled FROM gallery_changes WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(GalleryChange {
                        seq: r.try_get("seq")?,
                        gallery_id: r.try_get("gallery_id")?,
                        enrolled: r.try_get::<i64, _>("enrolled")? != 0,
                    })
                })
                .collect()
        })
        .await
    }

    /// Templates of `model_version` (others cannot be compared), unsealed, in gallery
    /// id order after `after`, at most `limit`: a start-up load reads pages, so no
    /// statement outlives the statement timeout and no more than a page of rows is
    /// held at once (a million templates are 2 GB of rows).
    pub async fn gallery_templates(
        &self,
        model_version: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<GalleryTemplate>, StoreError> {
        let rows = bounded(self.timeout, async {
            Ok(sqlx::query(
                "SELECT username, embedding, key_id, gallery_id FROM users \
                 WHERE model_version = $1 AND gallery_id > $2 ORDER BY gallery_id LIMIT $3",
            )
            .bind(model_version)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
        })
        .await?;
        rows.into_iter().map(|row| self.gallery_template(row, model_version)).collect()
    }

    /// The template of `gallery_id`, if it is still enrolled with `model_version`.
    pub async fn gallery_template_of(
        &self,
        gallery_id: i64,
        model_version: &str,
    ) -> Result<Option<GalleryTemplate>, StoreError> {
        let row = bounded(self.timeout, async {
            Ok(sqlx::query(
                "SELECT username, embedding, key_id, gallery_id FROM users WHERE gallery_id = $1 AND model_version = $2",
            )
            .bind(gallery_id)
            .bind(model_version)
            .fetch_optional(&self.pool)
            .await?)
        })
        .await?;
        row.map(|row| self.gallery_template(row, model_version)).transpose()
    }

    fn gallery_template(&self, row: sqlx::any::AnyRow, model_version: &str) -> Result<GalleryTemplate, StoreError> {
        let username: String = row.try_get("username")?;
        let bytes = self.open(&username, model_version, row.try_get("key_id")?, row.try_get("embedding")?)?;
        let embedding = FaceEmbedding::from_bytes(&bytes).ok_or_else(|| StoreError::CorruptTemplate(username))?;
        Ok(GalleryTemplate { gallery_id: row.try_get("gallery_id")?, embedding })
    }

    /// The usernames of gallery keys still enrolled, in one query (a search asks for
    /// up to 100).
    pub async fn usernames_of(&self, gallery_ids: &[i64]) -> Result<Vec<(i64, String)>, StoreError> {
        if gallery_ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (1..=gallery_ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!("SELECT gallery_id, username FROM users WHERE gallery_id IN ({})", placeholders.join(", "));
        bounded(self.timeout, async {
            let query = gallery_ids.iter().fold(sqlx::query(&sql), |q, id| q.bind(*id));
            let rows = query.fetch_all(&self.pool).await?;
            rows.iter().map(|r| Ok((r.try_get("gallery_id")?, r.try_get("username")?))).collect()
        })
        .await
    }

    /// Records an admin search (no image, no name).
    pub async fn record_admin_search(
        &self,
        request_id: &str,
        gallery_size: u64,
        results: usize,
        best_similarity: Option<f32>,
    ) -> Result<(), StoreError> {
        bounded(self.timeout, async {
            sqlx::query(
                "INSERT INTO admin_searches (at, request_id, gallery_size, results, best_similarity) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(now_ms())
            .bind(request_id)
            .bind(gallery_size as i64)
            .bind(results as i64)
            .bind(best_similarity.map(f64::from))
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }
}

/// Takes the advisory lock inside `tx` (PostgreSQL only).
pub(super) async fn lock_in(tx: &mut sqlx::AnyConnection) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(GALLERY_LOCK).execute(tx).await?;
    Ok(())
}

/// A new gallery key: random, positive, never 0.
pub(super) fn new_gallery_id() -> i64 {
    let mut bytes = [0u8; 8];
    // The OS's generator failing is not survivable anyway; fall back to the clock.
    if getrandom::fill(&mut bytes).is_err() {
        bytes = (now_ms() as u64).to_le_bytes();
    }
    ((u64::from_le_bytes(bytes) >> 1) as i64).max(1)
}

/// Records the erasure of every template `condition` selects (in the erasing
/// transaction, before the rows go).
pub(super) async fn record_erasures(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    username: Option<&str>,
) -> Result<(), StoreError> {
    if backend == Backend::Postgres {
        lock_in(&mut *conn).await?;
    }
    let sql = match username {
        Some(_) => {
            "INSERT INTO gallery_changes (gallery_id, enrolled, at) \
             SELECT gallery_id, 0, $1 FROM users WHERE gallery_id IS NOT NULL AND username = $2"
        }
        None => {
            "INSERT INTO gallery_changes (gallery_id, enrolled, at) \
             SELECT gallery_id, 0, $1 FROM users WHERE gallery_id IS NOT NULL"
        }
    };
    let query = sqlx::query(sql).bind(now_ms());
    match username {
        Some(name) => query.bind(name).execute(conn).await?,
        None => query.execute(conn).await?,
    };
    Ok(())
}
