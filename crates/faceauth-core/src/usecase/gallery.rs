//! The enrolled faces in memory, for duplicate search at enrollment and the admin
//! search (issue 20): an exact int8 index (`faceauth-gallery`) loaded from the store
//! at start-up, templates unsealed in memory only, kept current from the store's
//! change sequence: at once for this replica's own enrollments and erasures, and by
//! polling for the other replicas'. An enrollment catches up under the gallery lock
//! before it searches, so its answer does not depend on which replica is asked.

use std::sync::{Arc, RwLock};

use faceauth_gallery::Gallery;

use crate::store::{GalleryLock, StoreError, UserStore};
use crate::telemetry;
use crate::vision::FaceEmbedding;

/// Changes read per query while catching up.
const CHANGES_PER_READ: i64 = 10_000;
/// Templates read per query at start-up (about 20 MB of rows).
const TEMPLATES_PER_READ: i64 = 10_000;

/// One search result: a gallery key and its similarity (cosine of the int8 templates).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GalleryHit {
    pub gallery_id: i64,
    pub similarity: f32,
}

/// A search's answer: the gallery's size when searched and the best hits.
#[derive(Debug, Clone, PartialEq)]
pub struct GallerySearch {
    pub gallery_size: u64,
    pub hits: Vec<GalleryHit>,
}

/// The index and the last change it reflects.
struct Indexed {
    gallery: Gallery,
    /// `seq` of the last change applied; `None` until loaded.
    seen: Option<i64>,
}

/// The enrolled faces of one embedding model, searchable.
pub struct EnrolledFaces {
    model_version: String,
    index: RwLock<Indexed>,
    /// Held while catching up (one reader of the change sequence at a time) and, in
    /// this process, for an enrollment's search, decision and store.
    updating: tokio::sync::Mutex<()>,
}

impl EnrolledFaces {
    /// Empty and not loaded: the first `catch_up` loads every template.
    pub fn new(model_version: &str) -> Self {
        Self {
            model_version: model_version.to_string(),
            index: RwLock::new(Indexed { gallery: Gallery::new(), seen: None }),
            updating: tokio::sync::Mutex::new(()),
        }
    }

    /// Templates in the index.
    pub fn len(&self) -> usize {
        self.read().gallery.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Indexed> {
        self.index.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Indexed> {
        self.index.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Brings the index up to the store's last change (loading everything the first time).
    pub async fn catch_up(&self, store: &UserStore) -> Result<(), StoreError> {
        let _one_reader = self.updating.lock().await;
        self.catch_up_locked(store).await
    }

    async fn catch_up_locked(&self, store: &UserStore) -> Result<(), StoreError> {
        let seen = self.read().seen;
        let mut seen = match seen {
            Some(seen) => seen,
            None => {
                // The last change first: a template enrolled during the load is then
                // applied again below (an insert of the same key replaces it).
                let last = store.last_gallery_change().await?;
                // Sized once: growing by doubling copied the 512 MB of a million
                // templates, and the server peaked at 1.2 GB of RSS; sized, 733 MB.
                let expected = usize::try_from(store.count().await?).unwrap_or(0);
                let mut gallery = Gallery::with_capacity(expected).map_err(index_error)?;
                let mut after = 0;
                loop {
                    let page = store.gallery_templates(&self.model_version, after, TEMPLATES_PER_READ).await?;
                    let Some(end) = page.last().map(|t| t.gallery_id) else { break };
                    gallery.reserve(page.len()).map_err(index_error)?;
                    for t in &page {
                        gallery.insert(t.gallery_id.to_string(), t.embedding.values()).map_err(index_error)?;
                    }
                    after = end;
                }
                gallery.shrink_to_fit();
                *self.write() = Indexed { gallery, seen: Some(last) };
                last
            }
        };
        loop {
            let changes = store.gallery_changes(seen, CHANGES_PER_READ).await?;
            let Some(last) = changes.last().map(|c| c.seq) else {
                metrics::gauge!(telemetry::GALLERY_TEMPLATES).set(self.len() as f64);
                return Ok(());
            };
            for change in &changes {
                let key = change.gallery_id.to_string();
                // Read before the write lock: searches go on meanwhile.
                let template = match change.enrolled {
                    true => store.gallery_template_of(change.gallery_id, &self.model_version).await?,
                    false => None,
                };
                let mut index = self.write();
                match template {
                    Some(t) => index.gallery.insert(&key, t.embedding.values()).map_err(index_error)?,
                    // Erased, or erased again since it was enrolled.
                    None => {
                        index.gallery.remove(&key);
                    }
                }
                index.seen = Some(change.seq);
            }
            seen = last;
        }
    }

    /// The `k` most similar enrolled faces, on a blocking thread (a large gallery
    /// takes milliseconds).
    pub async fn search(self: &Arc<Self>, embedding: &FaceEmbedding, k: usize) -> GallerySearch {
        let (this, query) = (Arc::clone(self), embedding.values().to_vec());
        let search = tokio::task::spawn_blocking(move || {
            let index = this.read();
            let hits = index
                .gallery
                .search(&query, k, None)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|m| Some(GalleryHit { gallery_id: m.user.parse().ok()?, similarity: m.similarity }))
                .collect();
            GallerySearch { gallery_size: index.gallery.len() as u64, hits }
        });
        search.await.unwrap_or(GallerySearch { gallery_size: 0, hits: Vec::new() })
    }

    /// Takes this process's enrollment lock and the store's gallery lock, then
    /// catches up: what is searched next is every enrolled template, and no other
    /// enrollment (on any replica) stores a face until the guard is dropped or committed.
    pub async fn lock_for_enrollment(&self, store: &UserStore) -> Result<EnrollmentGuard<'_>, StoreError> {
        let process = self.updating.lock().await;
        let lock = store.lock_gallery().await?;
        self.catch_up_locked(store).await?;
        Ok(EnrollmentGuard { _process: process, lock: Some(lock), faces: self })
    }

    /// Polls the store for other replicas' changes every `interval`.
    pub fn watch(self: &Arc<Self>, store: UserStore, interval: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                ticks.tick().await;
                match this.catch_up(&store).await {
                    Ok(()) => failing = false,
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "the duplicate-search index could not catch up (retrying)");
                    }
                    Err(_) => {}
                }
            }
        })
    }
}

/// An enrollment between its search and its store (see `lock_for_enrollment`).
pub struct EnrollmentGuard<'a> {
    _process: tokio::sync::MutexGuard<'a, ()>,
    lock: Option<GalleryLock>,
    faces: &'a EnrolledFaces,
}

impl EnrollmentGuard<'_> {
    /// The store's lock, to write the enrollment under.
    pub fn lock(&mut self) -> Option<&mut GalleryLock> {
        self.lock.as_mut()
    }

    /// Commits what was written under the store's lock and releases that lock.
    pub async fn commit(&mut self) -> Result<(), StoreError> {
        match self.lock.take() {
            Some(lock) => lock.commit().await,
            None => Ok(()),
        }
    }

    /// Ends the enrollment: anything not committed is rolled back, and what was
    /// committed is in the index at once.
    pub async fn finish(mut self, store: &UserStore) -> Result<(), StoreError> {
        drop(self.lock.take());
        self.faces.catch_up_locked(store).await
    }
}

fn index_error(e: faceauth_gallery::GalleryError) -> StoreError {
    StoreError::Corrupt(format!("a template cannot be indexed: {e}"))
}
