//! The variants in force, and which of them a request meets.
//!
//! A/B: a user always meets the same answering variant while the experiment (the
//! catalog's `experiment` salt and the weights) is unchanged: the assignment is a
//! hash of salt and username, not a random draw. It is weighted rendezvous hashing,
//! so a change moves only the users it must (issue 21): a variant added takes its
//! share from every other and nobody else moves; a variant retired hands its users
//! out and nobody else moves; a weight raised moves users only into that variant.
//! Shadows run after the answer.

use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use sha2::{Digest, Sha256};

use super::super::LoadedPolicy;

/// One running variant.
#[derive(Debug)]
pub struct Variant {
    pub name: String,
    pub policy: Arc<LoadedPolicy>,
    pub weight: u32,
    pub shadow: bool,
    /// Failed calls in a row after which it retires itself; 0: never.
    pub retire_after_failures: u32,
    /// Why it was retired by itself, if it was (the catalog's `retired`).
    pub retired: Option<String>,
    /// Failed calls in a row so far on live traffic.
    pub(super) failing: AtomicU32,
}

impl Variant {
    pub fn new(name: String, policy: Arc<LoadedPolicy>, weight: u32, shadow: bool) -> Self {
        Self { name, policy, weight, shadow, retire_after_failures: 0, retired: None, failing: AtomicU32::new(0) }
    }

    /// `name@version` of the component.
    pub fn policy_label(&self) -> String {
        format!("{}@{}", self.policy.info().name, self.policy.info().version)
    }
}

/// The variants in force, as one immutable value.
#[derive(Debug)]
pub struct PolicySet {
    pub experiment: String,
    pub variants: Vec<Arc<Variant>>,
    /// Unix ms of the build.
    pub loaded_at_ms: i64,
}

/// The variants one request meets.
#[derive(Debug, Clone)]
pub struct Route {
    pub answer: Arc<Variant>,
    pub shadows: Vec<Arc<Variant>>,
}

impl Route {
    /// Liveness is measured when any variant of the route will read it.
    pub fn requires_liveness(&self) -> bool {
        std::iter::once(&self.answer).chain(&self.shadows).any(|v| v.policy.info().requires_liveness)
    }
}

impl PolicySet {
    /// The variant that answers `username` and the shadows; `None` only for a set
    /// without an answering variant, which is never installed.
    pub fn route(&self, username: &str) -> Option<Route> {
        let answer = self
            .variants
            .iter()
            .filter(|v| !v.shadow && v.weight > 0)
            .map(|v| (rendezvous_score(&self.experiment, &v.name, username, v.weight), v))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, v)| v.clone());
        let shadows = self.variants.iter().filter(|v| v.shadow).cloned().collect();
        Some(Route { answer: answer?, shadows })
    }

    pub fn variant(&self, name: &str) -> Option<&Arc<Variant>> {
        self.variants.iter().find(|v| v.name == name)
    }
}

/// Weighted rendezvous score of `variant` for a user: -ln(u) / weight, u uniform in
/// (0, 1) from sha256(experiment, 0, variant, 0, username). The lowest score wins:
/// each variant wins with probability weight / total, and a variant's score does not
/// depend on the others.
fn rendezvous_score(experiment: &str, variant: &str, username: &str, weight: u32) -> f64 {
    let digest = Sha256::new()
        .chain_update(experiment)
        .chain_update([0])
        .chain_update(variant)
        .chain_update([0])
        .chain_update(username)
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // 53 random bits, shifted off 0: u in (0, 1).
    let u = ((u64::from_be_bytes(first) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -u.ln() / f64::from(weight.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which of `variants` (name, weight) each of 10 000 users meets.
    fn assign(variants: &[(&str, u32)]) -> Vec<String> {
        (0..10_000)
            .map(|i| {
                let user = format!("user{i}");
                let (name, _) = variants
                    .iter()
                    .min_by(|a, b| {
                        rendezvous_score("e1", a.0, &user, a.1).total_cmp(&rendezvous_score("e1", b.0, &user, b.1))
                    })
                    .expect("a variant");
                name.to_string()
            })
            .collect()
    }

    fn share(assigned: &[String], name: &str) -> usize {
        assigned.iter().filter(|a| *a == name).count()
    }

    #[test]
    fn assignments_follow_the_weights_and_are_stable() {
        assert_eq!(rendezvous_score("e1", "a", "alice", 1), rendezvous_score("e1", "a", "alice", 1));
        assert_ne!(rendezvous_score("e1", "a", "alice", 1), rendezvous_score("e2", "a", "alice", 1));
        // 10/100 of 10 000 users, give or take.
        let assigned = assign(&[("a", 90), ("b", 10)]);
        assert!((850..1150).contains(&share(&assigned, "b")), "{}", share(&assigned, "b"));
    }

    /// Issue 21: adding a variant reshuffled users already assigned (a user's slot in
    /// the cumulative weights moved with every weight after it).
    #[test]
    fn adding_or_retiring_a_variant_moves_only_the_users_it_must() {
        let before = assign(&[("a", 50), ("b", 50)]);
        let after = assign(&[("a", 50), ("b", 50), ("c", 20)]);
        let moved: Vec<(&String, &String)> = before.iter().zip(&after).filter(|(b, a)| b != a).collect();
        assert!(moved.iter().all(|(_, to)| *to == "c"), "users moved between a and b");
        // c takes 20/120 of the users, give or take.
        assert!((1500..1850).contains(&moved.len()), "{}", moved.len());
        // Retiring c gives its users back where they were.
        assert_eq!(assign(&[("a", 50), ("b", 50)]), before);
        // Raising b's weight moves users only into b.
        let raised = assign(&[("a", 50), ("b", 80)]);
        assert!(before.iter().zip(&raised).all(|(b, r)| b == r || r == "b"));
    }
}
