//! The admin search (identify): the enrolled users most similar to the person in an
//! image, from the duplicate-search index; each search is recorded (no image, no name).

use serde::Serialize;

use super::service::store_call;
use super::{FaceAuth, UseCaseError};

/// Most results one search returns.
pub const MAX_SEARCH_RESULTS: usize = 100;

/// A second face at least this share of the largest face's height, and not the same
/// person, makes the image ambiguous: the enrollment rule for a second face on an ID
/// document (a smaller ghost portrait, or a copy of the same person, is fine).
const OTHER_PERSON_MIN_RELATIVE_SIZE: f32 = 0.6;
/// Cosine at or above which a second face is the same person (the 1:1 threshold).
const SAME_PERSON: f32 = 0.35;

/// One enrolled user found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FoundUser {
    pub username: String,
    /// Cosine similarity to the enrolled template, in [-1, 1].
    pub similarity: f32,
}

/// What a search found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaceSearch {
    /// Enrolled templates searched.
    pub gallery_size: u64,
    /// Faces in the image (the largest was searched).
    pub faces_detected: usize,
    /// Most similar first.
    pub matches: Vec<FoundUser>,
}

impl FaceAuth {
    /// The `top_k` enrolled users most similar to the person in `upload` (a still
    /// image). No face, or two people, is refused; an empty gallery finds no one.
    pub async fn search_enrolled(
        &self,
        request_id: &str,
        upload: Vec<u8>,
        top_k: usize,
    ) -> Result<FaceSearch, UseCaseError> {
        let (_, faces) = self.engine.analyze_upload(upload).await?;
        let primary = faces.first().ok_or(UseCaseError::NoFace)?;
        let height = primary.bbox.height().max(1.0);
        let other_person = faces[1..].iter().any(|f| {
            f.bbox.height() / height >= OTHER_PERSON_MIN_RELATIVE_SIZE
                && f.embedding.cosine(&primary.embedding) < SAME_PERSON
        });
        if other_person {
            return Err(UseCaseError::SeveralPeople(OTHER_PERSON_MIN_RELATIVE_SIZE * 100.0));
        }
        // Current with every replica's enrollments and erasures.
        store_call(self.faces.catch_up(&self.store)).await?;
        let search = self.faces.search(&primary.embedding, top_k.clamp(1, MAX_SEARCH_RESULTS)).await;
        let ids: Vec<i64> = search.hits.iter().map(|h| h.gallery_id).collect();
        let names = store_call(self.store.usernames_of(&ids)).await?;
        // Erased since the search: left out.
        let matches: Vec<FoundUser> = search
            .hits
            .iter()
            .filter_map(|h| {
                let (_, name) = names.iter().find(|(id, _)| *id == h.gallery_id)?;
                Some(FoundUser { username: name.clone(), similarity: h.similarity })
            })
            .collect();
        let best = matches.first().map(|m| m.similarity);
        self.watch_write(
            store_call(self.store.record_admin_search(request_id, search.gallery_size, matches.len(), best)).await,
        )?;
        Ok(FaceSearch { gallery_size: search.gallery_size, faces_detected: faces.len(), matches })
    }
}
