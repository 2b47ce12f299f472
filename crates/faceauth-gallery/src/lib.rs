//! In-memory exact 1:N search over enrolled face templates (issue 20).
//!
//! A [`Gallery`] holds one template per user: a 512-d face embedding (the host's
//! `FaceEmbedding`, cosine similarity = dot product) stored as int8 with one f32
//! factor per vector, in one contiguous array, so a search is a linear scan of
//! int8 dot products ([simsimd], with run-time dispatch to AVX2 / AVX-512 VNNI /
//! NEON / SVE kernels) and a small heap keeping the best `k`. The search is exact
//! over the stored (quantised) templates: no candidate is skipped.
//!
//! **Quantisation.** Each vector is scaled by its largest absolute value to
//! `[-127, 127]` and rounded; the stored factor is `1 / ‖q‖`, and the query is
//! quantised the same way, so a similarity is the cosine of the two quantised
//! vectors (a template against itself scores 1). Measured against f32 cosine
//! (`examples/gallery_bench.rs`, 200 000 pairs of Gaussian 512-d vectors, which
//! match the component statistics of the model's embeddings, at cosines 0.30..0.80,
//! plus the 21 pairs of the 7 real embeddings in `shared/reference`): mean absolute
//! error 0.0003, 99.9th percentile 0.0013, worst 0.0021 — far below 0.01 near
//! the decision thresholds 0.35..0.7.
//!
//! **Memory.** 512 B of codes + 4 B factor + the user key (shared by the slot table
//! and the user → slot map) + map overhead: about 0.65 KiB per template with
//! 36-byte keys ([`Gallery::memory_bytes`] estimates it).
//!
//! **Cost.** Linear in the gallery and bound by memory bandwidth (512 B read per
//! template). `examples/gallery_bench.rs` ran on a shared 2-core Zen 4 machine, with
//! one search on one thread: 100 k templates gave 2.2 ms p50, 1 M gave 21.5 ms p50
//! with a load time of 4.5 s. Figures and commands are in the crate README. Past a
//! few million templates a deployment would use an approximate index (HNSW, e.g.
//! usearch) or a vector engine (qdrant, pgvector) instead.
//!
//! **Concurrency.** `Gallery` is `Send + Sync`; searches take `&self`, changes
//! `&mut self`, so the host wraps it in a `RwLock`. A large gallery's search takes
//! milliseconds: run it on a blocking thread, not on the async executor.

mod codes;

use std::collections::HashMap;
use std::sync::Arc;

use simsimd::SpatialSimilarity;

use crate::codes::Codes;

/// Length of a face template (the host's `FaceEmbedding::DIMENSIONS`).
pub const DIMENSIONS: usize = 512;

/// Largest quantised magnitude: codes lie in `[-127, 127]`, so `-128` never occurs.
const CODE_MAX: f32 = 127.0;

/// Bad input at the gallery's boundary.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GalleryError {
    #[error("a face template has {DIMENSIONS} values, this one has {found}")]
    DimensionMismatch { found: usize },
    #[error("face template value {index} is not finite")]
    NonFinite { index: usize },
    #[error("the face template is all zeros")]
    ZeroVector,
    #[error("the user key is empty")]
    EmptyUser,
    #[error("cannot allocate {bytes} bytes for face templates")]
    Allocation { bytes: usize },
    /// One entry of [`Gallery::try_extend`] / [`Gallery::try_from_iter`]
    /// (`try_extend` keeps the entries before it).
    #[error("entry {index} (user {user:?}) of a bulk load: {source}")]
    BulkEntry {
        index: usize,
        user: String,
        #[source]
        source: Box<GalleryError>,
    },
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub user: String,
    /// Cosine similarity of the quantised templates, in `[-1, 1]`.
    pub similarity: f32,
}

/// A quantised vector: codes and `1 / ‖codes‖`.
struct Quantised {
    codes: [i8; DIMENSIONS],
    inverse_norm: f32,
}

/// Checks a template and quantises it. Any finite non-zero vector is accepted;
/// it need not be normalised (similarities are cosines).
fn quantise(values: &[f32]) -> Result<Quantised, GalleryError> {
    if values.len() != DIMENSIONS {
        return Err(GalleryError::DimensionMismatch { found: values.len() });
    }
    let mut max_abs = 0.0f32;
    for (index, value) in values.iter().enumerate() {
        if !value.is_finite() {
            return Err(GalleryError::NonFinite { index });
        }
        max_abs = max_abs.max(value.abs());
    }
    if max_abs == 0.0 {
        return Err(GalleryError::ZeroVector);
    }
    let mut codes = [0i8; DIMENSIONS];
    let mut norm_sq = 0i64;
    for (code, value) in codes.iter_mut().zip(values) {
        // value / max_abs is in [-1, 1] (also for subnormal max_abs), so the cast
        // neither saturates nor reaches -128.
        let q = (value / max_abs * CODE_MAX).round() as i8;
        *code = q;
        norm_sq += i64::from(q) * i64::from(q);
    }
    // The largest value maps to ±127, so norm_sq >= 127².
    Ok(Quantised { codes, inverse_norm: (1.0 / (norm_sq as f64).sqrt()) as f32 })
}

/// Integer dot product of two code vectors (exact: |sum| <= 512 · 127² < 2^24).
#[inline]
fn dot(a: &[i8], b: &[i8]) -> f32 {
    // Equal lengths by construction, so simsimd always answers.
    i8::dot(a, b).unwrap_or(0.0) as f32
}

/// An in-memory exact nearest-neighbour index over users' face templates.
#[derive(Default)]
pub struct Gallery {
    /// `DIMENSIONS` codes per slot, slots contiguous.
    codes: Codes,
    /// `1 / ‖codes‖` per slot.
    inverse_norms: Vec<f32>,
    /// The user of each slot.
    users: Vec<Arc<str>>,
    /// user → slot.
    slots: HashMap<Arc<str>, usize>,
    /// Sum of the users' key lengths, for [`Gallery::memory_bytes`].
    key_bytes: usize,
}

impl std::fmt::Debug for Gallery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the templates (biometric data), nor megabytes of codes.
        f.debug_struct("Gallery").field("len", &self.len()).field("memory_bytes", &self.memory_bytes()).finish()
    }
}

impl Gallery {
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty gallery with room for `templates` users before it reallocates.
    pub fn with_capacity(templates: usize) -> Result<Self, GalleryError> {
        let mut gallery = Self::new();
        gallery.reserve(templates)?;
        Ok(gallery)
    }

    /// Room for `additional` more users.
    pub fn reserve(&mut self, additional: usize) -> Result<(), GalleryError> {
        let too_much = |_| GalleryError::Allocation { bytes: additional.saturating_mul(DIMENSIONS) };
        self.codes.reserve(additional.saturating_mul(DIMENSIONS))?;
        self.inverse_norms.try_reserve(additional).map_err(too_much)?;
        self.users.try_reserve(additional).map_err(too_much)?;
        self.slots.try_reserve(additional).map_err(too_much)?;
        Ok(())
    }

    /// Frees spare capacity (after a bulk load or many removals).
    pub fn shrink_to_fit(&mut self) {
        // Without memory for a smaller copy the codes stay where they are.
        let _ = self.codes.shrink_to_fit();
        self.inverse_norms.shrink_to_fit();
        self.users.shrink_to_fit();
        self.slots.shrink_to_fit();
    }

    /// A copy (`Gallery` is not `Clone`: copying may need hundreds of megabytes).
    pub fn try_clone(&self) -> Result<Self, GalleryError> {
        Ok(Self {
            codes: self.codes.try_clone()?,
            inverse_norms: self.inverse_norms.clone(),
            users: self.users.clone(),
            slots: self.slots.clone(),
            key_bytes: self.key_bytes,
        })
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn contains(&self, user: &str) -> bool {
        self.slots.contains_key(user)
    }

    /// Enrolls `user` with `template`, replacing the user's previous template. On
    /// error the gallery is unchanged.
    pub fn insert(&mut self, user: impl AsRef<str>, template: &[f32]) -> Result<(), GalleryError> {
        let user = user.as_ref();
        if user.is_empty() {
            return Err(GalleryError::EmptyUser);
        }
        let quantised = quantise(template)?;
        self.insert_quantised(user, &quantised)
    }

    fn insert_quantised(&mut self, user: &str, quantised: &Quantised) -> Result<(), GalleryError> {
        if let Some(&slot) = self.slots.get(user) {
            self.codes.as_mut_slice()[slot * DIMENSIONS..(slot + 1) * DIMENSIONS].copy_from_slice(&quantised.codes);
            self.inverse_norms[slot] = quantised.inverse_norm;
            return Ok(());
        }
        // The one step that can fail comes first.
        self.codes.extend_from_slice(&quantised.codes)?;
        let key: Arc<str> = Arc::from(user);
        self.key_bytes += key.len();
        self.slots.insert(Arc::clone(&key), self.users.len());
        self.users.push(key);
        self.inverse_norms.push(quantised.inverse_norm);
        Ok(())
    }

    /// Removes `user`'s template in O(1) (the last slot moves into its place);
    /// `false` when the user was not enrolled.
    pub fn remove(&mut self, user: &str) -> bool {
        let Some((key, slot)) = self.slots.remove_entry(user) else {
            return false;
        };
        self.key_bytes -= key.len();
        let last = self.users.len() - 1;
        if slot != last {
            self.codes.as_mut_slice().copy_within(last * DIMENSIONS..(last + 1) * DIMENSIONS, slot * DIMENSIONS);
            let moved = Arc::clone(&self.users[last]);
            if let Some(moved_slot) = self.slots.get_mut(&moved) {
                *moved_slot = slot;
            }
        }
        self.codes.truncate(last * DIMENSIONS);
        self.inverse_norms.swap_remove(slot);
        self.users.swap_remove(slot);
        true
    }

    /// Enrolls many users (start-up loading); a user given twice keeps the later
    /// template. Stops at the first bad entry with [`GalleryError::BulkEntry`],
    /// the entries before it staying in. Returns how many entries were taken.
    pub fn try_extend<I, U, T>(&mut self, entries: I) -> Result<usize, GalleryError>
    where
        I: IntoIterator<Item = (U, T)>,
        U: AsRef<str>,
        T: AsRef<[f32]>,
    {
        let entries = entries.into_iter();
        self.reserve(entries.size_hint().0)?;
        let mut count = 0;
        for (index, (user, template)) in entries.enumerate() {
            let user = user.as_ref();
            let inserted = if user.is_empty() {
                Err(GalleryError::EmptyUser)
            } else {
                quantise(template.as_ref()).and_then(|quantised| self.insert_quantised(user, &quantised))
            };
            if let Err(source) = inserted {
                return Err(GalleryError::BulkEntry { index, user: user.to_owned(), source: Box::new(source) });
            }
            count += 1;
        }
        Ok(count)
    }

    /// A gallery of `entries` (see [`Gallery::try_extend`]).
    pub fn try_from_iter<I, U, T>(entries: I) -> Result<Self, GalleryError>
    where
        I: IntoIterator<Item = (U, T)>,
        U: AsRef<str>,
        T: AsRef<[f32]>,
    {
        let mut gallery = Self::new();
        gallery.try_extend(entries)?;
        Ok(gallery)
    }

    /// Similarity of `query` to `user`'s template (1:1), `None` when the user is
    /// not enrolled.
    pub fn similarity(&self, user: &str, query: &[f32]) -> Result<Option<f32>, GalleryError> {
        let query = quantise(query)?;
        Ok(self.slots.get(user).map(|&slot| self.score(slot, &query)))
    }

    fn template_codes(&self, slot: usize) -> &[i8] {
        &self.codes.as_slice()[slot * DIMENSIONS..(slot + 1) * DIMENSIONS]
    }

    fn score(&self, slot: usize, query: &Quantised) -> f32 {
        (dot(self.template_codes(slot), &query.codes) * self.inverse_norms[slot] * query.inverse_norm).clamp(-1.0, 1.0)
    }

    /// The `k` enrolled users most similar to `query`, most similar first (ties by
    /// user key), leaving out `exclude`. Fewer when the gallery holds fewer; empty
    /// for `k = 0` or an empty gallery. The query is checked like a template.
    pub fn search(&self, query: &[f32], k: usize, exclude: Option<&str>) -> Result<Vec<Match>, GalleryError> {
        let query = quantise(query)?;
        let excluded = exclude.and_then(|user| self.slots.get(user).copied());
        let mut best = TopK::new(k.min(self.len()));
        if best.k > 0 {
            // Scores a block at a time, then selects: the scan loop stays branch-free.
            const BLOCK: usize = 64;
            let mut scores = [0.0f32; BLOCK];
            let blocks = self.codes.as_slice().chunks(BLOCK * DIMENSIONS).zip(self.inverse_norms.chunks(BLOCK));
            for (block, (codes, inverse_norms)) in blocks.enumerate() {
                let first = block * BLOCK;
                for ((score, codes), inverse_norm) in
                    scores.iter_mut().zip(codes.chunks_exact(DIMENSIONS)).zip(inverse_norms)
                {
                    *score = dot(codes, &query.codes) * inverse_norm;
                }
                for (slot, &score) in (first..).zip(&scores[..inverse_norms.len()]) {
                    if Some(slot) != excluded {
                        best.offer(score, slot);
                    }
                }
            }
        }
        let mut matches: Vec<Match> = best
            .into_vec()
            .into_iter()
            .map(|candidate| Match {
                user: self.users[candidate.slot].to_string(),
                similarity: (candidate.score * query.inverse_norm).clamp(-1.0, 1.0),
            })
            .collect();
        matches.sort_by(|a, b| b.similarity.total_cmp(&a.similarity).then_with(|| a.user.cmp(&b.user)));
        Ok(matches)
    }

    /// Estimated heap bytes held (capacities included): codes, factors, the slot
    /// table, the user → slot map and the user keys.
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        // hashbrown keeps capacity = 7/8 of its power-of-two bucket count, one
        // control byte per bucket plus one SIMD group.
        let buckets = match self.slots.capacity() {
            0 => 0,
            capacity => (capacity.saturating_mul(8) / 7).next_power_of_two(),
        };
        let map = buckets * (size_of::<(Arc<str>, usize)>() + 1) + if buckets > 0 { 16 } else { 0 };
        // Each key is one allocation: two reference counts and the bytes, rounded
        // up by the allocator (16-byte granules plus an 8-byte header).
        let keys = self.len() * (2 * size_of::<usize>() + 8 + 8) + self.key_bytes;
        self.codes.capacity()
            + self.inverse_norms.capacity() * size_of::<f32>()
            + self.users.capacity() * size_of::<Arc<str>>()
            + map
            + keys
    }
}

/// A candidate: its unscaled score (query factor not applied) and its slot.
#[derive(Clone, Copy)]
struct Candidate {
    score: f32,
    slot: usize,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Candidate {}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate {
    /// Better is greater: higher score, then lower slot.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.score.total_cmp(&other.score).then_with(|| other.slot.cmp(&self.slot))
    }
}

/// The best `k` candidates seen: a min-heap of size `k` whose root is the worst
/// kept, so most candidates cost one comparison.
struct TopK {
    k: usize,
    heap: std::collections::BinaryHeap<std::cmp::Reverse<Candidate>>,
    /// The worst kept score once `k` are kept (-inf before): anything below it is
    /// out without touching the heap.
    threshold: f32,
}

impl TopK {
    fn new(k: usize) -> Self {
        Self { k, heap: std::collections::BinaryHeap::with_capacity(k), threshold: f32::NEG_INFINITY }
    }

    #[inline]
    fn offer(&mut self, score: f32, slot: usize) {
        if score < self.threshold {
            return;
        }
        self.offer_slow(Candidate { score, slot });
    }

    #[inline(never)]
    fn offer_slow(&mut self, candidate: Candidate) {
        if self.heap.len() < self.k {
            self.heap.push(std::cmp::Reverse(candidate));
        } else if let Some(mut worst) = self.heap.peek_mut()
            && candidate > worst.0
        {
            worst.0 = candidate;
        }
        if self.heap.len() == self.k
            && let Some(worst) = self.heap.peek()
        {
            self.threshold = worst.0.score;
        }
    }

    fn into_vec(self) -> Vec<Candidate> {
        self.heap.into_iter().map(|std::cmp::Reverse(candidate)| candidate).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// A unit vector with Gaussian components (the statistics of the model's
    /// embeddings: kurtosis ≈ 3, largest |component| ≈ 0.15).
    fn random_unit(rng: &mut StdRng) -> Vec<f32> {
        let mut v: Vec<f32> = (0..DIMENSIONS)
            .map(|_| {
                let u: f64 = rng.random_range(f64::EPSILON..1.0);
                let t: f64 = rng.random();
                ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * t).cos()) as f32
            })
            .collect();
        normalise(&mut v);
        v
    }

    fn normalise(v: &mut [f32]) {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
    }

    /// A unit vector whose cosine with unit `base` is about `cosine`.
    fn near(rng: &mut StdRng, base: &[f32], cosine: f32) -> Vec<f32> {
        let noise = random_unit(rng);
        let spread = (1.0 - cosine * cosine).sqrt();
        let mut v: Vec<f32> = base.iter().zip(&noise).map(|(b, n)| cosine * b + spread * n).collect();
        normalise(&mut v);
        v
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    fn users(matches: &[Match]) -> Vec<&str> {
        matches.iter().map(|m| m.user.as_str()).collect()
    }

    /// Largest similarity error tolerated in the tests (measured worst ≈ 0.002).
    const TOLERANCE: f32 = 0.005;

    #[test]
    fn top_k_agrees_with_brute_force_f32() {
        let mut rng = StdRng::seed_from_u64(20);
        let templates: Vec<Vec<f32>> = (0..3000).map(|_| random_unit(&mut rng)).collect();
        let gallery =
            Gallery::try_from_iter(templates.iter().enumerate().map(|(i, t)| (format!("user-{i}"), t))).unwrap();
        assert_eq!(gallery.len(), templates.len());
        for q in 0..30 {
            // Queries near a few enrolled users (0.35..0.75) and plain random ones.
            let base = &templates[q * 97 % templates.len()];
            let mut query =
                if q % 3 == 0 { random_unit(&mut rng) } else { near(&mut rng, base, 0.35 + 0.02 * q as f32) };
            if q % 5 == 0 {
                // Planted neighbours with near-tied cosines.
                for i in 0..4 {
                    query = near(&mut rng, &templates[(q + 11 * i) % templates.len()], 0.5);
                }
            }
            let k = 10;
            let found = gallery.search(&query, k, None).unwrap();
            let mut exact: Vec<(f32, String)> =
                templates.iter().enumerate().map(|(i, t)| (cosine(t, &query), format!("user-{i}"))).collect();
            exact.sort_by(|a, b| b.0.total_cmp(&a.0));
            assert_eq!(found.len(), k);
            let kth = exact[k - 1].0;
            for (rank, m) in found.iter().enumerate() {
                let index: usize = m.user.trim_start_matches("user-").parse().unwrap();
                let truth = cosine(&templates[index], &query);
                assert!(
                    (m.similarity - truth).abs() < TOLERANCE,
                    "query {q}: {} {} vs f32 {truth}",
                    m.user,
                    m.similarity
                );
                // Nothing returned that the f32 search ranks clearly below its k-th.
                assert!(truth > kth - 2.0 * TOLERANCE, "query {q}: {} at f32 {truth}, k-th {kth}", m.user);
                // The order is exact f32 order up to the quantisation error.
                assert!((exact[rank].0 - truth).abs() < 2.0 * TOLERANCE, "query {q}, rank {rank}");
            }
            // Nothing the f32 search ranks clearly inside the top k is missing.
            for (truth, user) in exact.iter().take_while(|(c, _)| *c > kth + 2.0 * TOLERANCE) {
                assert!(users(&found).contains(&user.as_str()), "query {q}: {user} at f32 {truth} missing");
            }
            assert!(found.windows(2).all(|w| w[0].similarity >= w[1].similarity), "sorted descending");
            // Exact over the stored codes: the same as scoring every user one by one.
            let mut one_by_one: Vec<Match> = (0..templates.len())
                .map(|i| {
                    let user = format!("user-{i}");
                    Match { similarity: gallery.similarity(&user, &query).unwrap().unwrap(), user }
                })
                .collect();
            one_by_one.sort_by(|a, b| b.similarity.total_cmp(&a.similarity).then_with(|| a.user.cmp(&b.user)));
            assert_eq!(found, one_by_one[..k]);
            // Leaving out the best (wherever its block) shifts the rest up by one.
            let without_best = gallery.search(&query, k, Some(&found[0].user)).unwrap();
            assert_eq!(without_best[..k - 1], found[1..]);
            assert!(!users(&without_best).contains(&found[0].user.as_str()));
        }
    }

    #[test]
    fn similarity_error_near_the_thresholds_is_small() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut gallery = Gallery::new();
        let mut worst = 0.0f32;
        for i in 0..2000 {
            let enrolled = random_unit(&mut rng);
            let probe = near(&mut rng, &enrolled, 0.3 + 0.45 * (i as f32 / 2000.0));
            gallery.insert("u", &enrolled).unwrap();
            let quantised = gallery.similarity("u", &probe).unwrap().unwrap();
            worst = worst.max((quantised - cosine(&enrolled, &probe)).abs());
        }
        assert!(worst < TOLERANCE, "worst error {worst}");
        assert!(worst > 0.0, "the codes are int8: some error must show");
    }

    #[test]
    fn a_template_matches_itself_and_scale_does_not_matter() {
        let mut rng = StdRng::seed_from_u64(1);
        let t = random_unit(&mut rng);
        let mut gallery = Gallery::new();
        gallery.insert("alice", &t).unwrap();
        assert!((gallery.similarity("alice", &t).unwrap().unwrap() - 1.0).abs() < 1e-6);
        let scaled: Vec<f32> = t.iter().map(|x| x * 1e20).collect();
        assert_eq!(gallery.similarity("alice", &scaled).unwrap(), gallery.similarity("alice", &t).unwrap());
        let opposite: Vec<f32> = t.iter().map(|x| -x).collect();
        assert!((gallery.similarity("alice", &opposite).unwrap().unwrap() + 1.0).abs() < 1e-6);
        assert_eq!(gallery.similarity("bob", &t).unwrap(), None);
        // Extreme but finite magnitudes neither overflow nor underflow.
        let mut tiny = vec![0.0f32; DIMENSIONS];
        tiny[3] = f32::from_bits(1); // the smallest subnormal
        gallery.insert("tiny", &tiny).unwrap();
        assert!((gallery.similarity("tiny", &tiny).unwrap().unwrap() - 1.0).abs() < 1e-6);
        gallery.insert("huge", &vec![f32::MAX; DIMENSIONS]).unwrap();
        assert!((gallery.similarity("huge", &vec![-f32::MAX; DIMENSIONS]).unwrap().unwrap() + 1.0).abs() < 1e-6);
    }

    #[test]
    fn insert_replaces_the_users_template() {
        let mut rng = StdRng::seed_from_u64(2);
        let (old, new) = (random_unit(&mut rng), random_unit(&mut rng));
        let mut gallery = Gallery::new();
        gallery.insert("alice", &old).unwrap();
        gallery.insert("bob", &random_unit(&mut rng)).unwrap();
        gallery.insert(String::from("alice"), &new).unwrap();
        assert_eq!(gallery.len(), 2);
        let best = gallery.search(&new, 1, None).unwrap();
        assert_eq!(users(&best), ["alice"]);
        assert!(best[0].similarity > 0.999);
        assert!(gallery.similarity("alice", &old).unwrap().unwrap() < 0.3);
    }

    #[test]
    fn remove_takes_the_user_out_at_once_and_keeps_the_others_right() {
        let mut rng = StdRng::seed_from_u64(3);
        let templates: Vec<Vec<f32>> = (0..5).map(|_| random_unit(&mut rng)).collect();
        let mut gallery = Gallery::try_from_iter(["a", "b", "c", "d", "e"].into_iter().zip(&templates)).unwrap();
        assert!(gallery.remove("b")); // "e" moves into b's slot
        assert!(!gallery.remove("b"));
        assert!(!gallery.remove("nobody"));
        assert_eq!(gallery.len(), 4);
        assert!(!gallery.contains("b"));
        let all = gallery.search(&templates[1], 10, None).unwrap();
        assert!(!users(&all).contains(&"b"));
        assert_eq!(all.len(), 4);
        // Every remaining user still finds exactly their own template first.
        for (user, template) in ["a", "c", "d", "e"].iter().zip([0, 2, 3, 4].map(|i| &templates[i])) {
            let best = gallery.search(template, 1, None).unwrap();
            assert_eq!(users(&best), [*user]);
            assert!(best[0].similarity > 0.999);
        }
        assert!(gallery.remove("e")); // the moved one
        assert!(gallery.remove("d")); // the last slot
        assert_eq!(users(&gallery.search(&templates[2], 5, None).unwrap()).first(), Some(&"c"));
        assert!(gallery.remove("a") && gallery.remove("c"));
        assert!(gallery.is_empty());
        assert_eq!(gallery.search(&templates[0], 5, None).unwrap(), []);
        gallery.insert("a", &templates[0]).unwrap();
        assert_eq!(users(&gallery.search(&templates[0], 5, None).unwrap()), ["a"]);
    }

    #[test]
    fn exclude_leaves_out_one_user() {
        let mut rng = StdRng::seed_from_u64(4);
        let alice = random_unit(&mut rng);
        let mut gallery = Gallery::new();
        gallery.insert("alice", &alice).unwrap();
        gallery.insert("alice-twin", &near(&mut rng, &alice, 0.8)).unwrap();
        gallery.insert("carol", &random_unit(&mut rng)).unwrap();
        assert_eq!(users(&gallery.search(&alice, 2, None).unwrap()), ["alice", "alice-twin"]);
        assert_eq!(users(&gallery.search(&alice, 1, Some("alice")).unwrap()), ["alice-twin"]);
        assert_eq!(users(&gallery.search(&alice, 5, Some("alice")).unwrap()), ["alice-twin", "carol"]);
        assert_eq!(users(&gallery.search(&alice, 1, Some("nobody")).unwrap()), ["alice"]);
    }

    #[test]
    fn empty_gallery_zero_k_and_large_k() {
        let mut rng = StdRng::seed_from_u64(5);
        let query = random_unit(&mut rng);
        let mut gallery = Gallery::new();
        assert!(gallery.is_empty());
        assert_eq!(gallery.search(&query, 10, None).unwrap(), []);
        assert_eq!(gallery.search(&query, 10, Some("x")).unwrap(), []);
        for i in 0..7 {
            gallery.insert(format!("u{i}"), &random_unit(&mut rng)).unwrap();
        }
        assert_eq!(gallery.search(&query, 0, None).unwrap(), []);
        let all = gallery.search(&query, usize::MAX, None).unwrap();
        assert_eq!(all.len(), 7);
        assert!(all.windows(2).all(|w| w[0].similarity >= w[1].similarity));
        assert_eq!(gallery.search(&query, 100, Some("u3")).unwrap().len(), 6);
    }

    #[test]
    fn bad_templates_and_keys_are_errors_and_change_nothing() {
        let mut rng = StdRng::seed_from_u64(6);
        let good = random_unit(&mut rng);
        let mut gallery = Gallery::new();
        gallery.insert("alice", &good).unwrap();
        let short = &good[..511];
        assert_eq!(gallery.insert("bob", short), Err(GalleryError::DimensionMismatch { found: 511 }));
        assert_eq!(gallery.insert("bob", &[]), Err(GalleryError::DimensionMismatch { found: 0 }));
        let long = [good.as_slice(), &[0.0]].concat();
        assert_eq!(gallery.search(&long, 1, None), Err(GalleryError::DimensionMismatch { found: 513 }));
        let mut nan = good.clone();
        nan[17] = f32::NAN;
        assert_eq!(gallery.insert("alice", &nan), Err(GalleryError::NonFinite { index: 17 }));
        assert_eq!(gallery.search(&nan, 1, None), Err(GalleryError::NonFinite { index: 17 }));
        assert_eq!(Gallery::new().search(&nan, 1, None), Err(GalleryError::NonFinite { index: 17 }));
        let mut inf = good.clone();
        inf[0] = f32::NEG_INFINITY;
        assert_eq!(gallery.insert("bob", &inf), Err(GalleryError::NonFinite { index: 0 }));
        assert_eq!(gallery.similarity("alice", &inf), Err(GalleryError::NonFinite { index: 0 }));
        assert_eq!(gallery.insert("bob", &[0.0; DIMENSIONS]), Err(GalleryError::ZeroVector));
        assert_eq!(gallery.search(&[-0.0; DIMENSIONS], 1, None), Err(GalleryError::ZeroVector));
        assert_eq!(gallery.insert("", &good), Err(GalleryError::EmptyUser));
        // Nothing changed: alice keeps her template, bob was never enrolled.
        assert_eq!(gallery.len(), 1);
        assert!(gallery.similarity("alice", &good).unwrap().unwrap() > 0.999);
        assert!(GalleryError::NonFinite { index: 17 }.to_string().contains("17"));
        // Memory that cannot be had is an error, not an abort.
        assert!(matches!(Gallery::with_capacity(usize::MAX / 1024), Err(GalleryError::Allocation { .. })));
        assert!(matches!(gallery.reserve(1 << 50), Err(GalleryError::Allocation { .. })));
        assert_eq!(gallery.len(), 1);
    }

    #[test]
    fn bulk_load_stops_at_a_bad_entry_and_names_it() {
        let mut rng = StdRng::seed_from_u64(8);
        let mut entries: Vec<(String, Vec<f32>)> = (0..5).map(|i| (format!("u{i}"), random_unit(&mut rng))).collect();
        entries[2].1[5] = f32::INFINITY;
        let mut gallery = Gallery::new();
        let err = gallery.try_extend(entries.clone()).unwrap_err();
        assert_eq!(
            err,
            GalleryError::BulkEntry {
                index: 2,
                user: "u2".into(),
                source: Box::new(GalleryError::NonFinite { index: 5 })
            }
        );
        assert_eq!(gallery.len(), 2);
        assert!(std::error::Error::source(&err).is_some());
        entries.remove(2);
        // A user given twice keeps the later template.
        entries.push(("u0".into(), entries[1].1.clone()));
        assert_eq!(gallery.try_extend(entries.clone()), Ok(5));
        assert_eq!(gallery.len(), 4);
        assert_eq!(users(&gallery.search(&entries[1].1, 2, None).unwrap()), ["u0", "u1"]);
        assert!(matches!(
            Gallery::try_from_iter([("", entries[0].1.clone())]),
            Err(GalleryError::BulkEntry { index: 0, .. })
        ));
    }

    #[test]
    fn memory_stays_under_the_budget() {
        let mut rng = StdRng::seed_from_u64(9);
        let template = random_unit(&mut rng);
        let n = 20_000;
        let mut gallery = Gallery::with_capacity(n).unwrap();
        for i in 0..n {
            // 36 bytes, the length of a UUID.
            gallery.insert(format!("{i:036}"), &template).unwrap();
        }
        let per_template = gallery.memory_bytes() as f64 / n as f64;
        assert!(per_template > 512.0 + 4.0 + 36.0, "estimate misses parts: {per_template}");
        assert!(per_template <= 1.2 * 1024.0, "{per_template} bytes per template");
    }

    #[test]
    fn storage_grows_shrinks_and_copies() {
        let mut rng = StdRng::seed_from_u64(11);
        let templates: Vec<Vec<f32>> = (0..50).map(|_| random_unit(&mut rng)).collect();
        let mut gallery = Gallery::new();
        assert_eq!(gallery.memory_bytes(), 0);
        // 9000 templates: several moves of the code array, past the 2 MiB huge-page size.
        for i in 0..9000 {
            gallery.insert(format!("u{i}"), &templates[i % templates.len()]).unwrap();
        }
        for i in (0..9000).filter(|i| i % 3 != 0) {
            assert!(gallery.remove(&format!("u{i}")));
        }
        assert_eq!(gallery.len(), 3000);
        let before = gallery.memory_bytes();
        gallery.shrink_to_fit();
        assert!(gallery.memory_bytes() < before, "{} -> {}", before, gallery.memory_bytes());
        let copy = gallery.try_clone().unwrap();
        drop(gallery);
        for i in [0, 2997, 8997] {
            assert!(
                (copy.similarity(&format!("u{i}"), &templates[i % templates.len()]).unwrap().unwrap() - 1.0).abs()
                    < 1e-6
            );
        }
        let mut emptied = copy.try_clone().unwrap();
        for i in (0..9000).step_by(3) {
            assert!(emptied.remove(&format!("u{i}")));
        }
        emptied.shrink_to_fit();
        assert!(emptied.is_empty());
        assert_eq!(emptied.search(&templates[0], 3, None).unwrap(), []);
        emptied.insert("again", &templates[0]).unwrap();
        assert_eq!(users(&emptied.search(&templates[0], 3, None).unwrap()), ["again"]);
        assert_eq!(copy.len(), 3000);
    }

    #[test]
    fn shared_across_threads_behind_a_rwlock() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Gallery>();
        send_sync::<GalleryError>();
        let mut rng = StdRng::seed_from_u64(10);
        let template = random_unit(&mut rng);
        let gallery = std::sync::Arc::new(std::sync::RwLock::new(Gallery::new()));
        let writer = {
            let gallery = std::sync::Arc::clone(&gallery);
            let template = template.clone();
            std::thread::spawn(move || gallery.write().unwrap().insert("alice", &template))
        };
        writer.join().unwrap().unwrap();
        let found = gallery.read().unwrap().search(&template, 1, None).unwrap();
        assert_eq!(users(&found), ["alice"]);
    }
}
