//! The variants in force, and which of them a request meets.
//!
//! A/B: a user always meets the same answering variant while the experiment (the
//! catalog's `experiment` salt and the weights) is unchanged: the assignment is a
//! hash of salt and username, not a random draw. Shadows run after the answer.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::super::LoadedPolicy;

/// One running variant.
#[derive(Debug)]
pub struct Variant {
    pub name: String,
    pub policy: Arc<LoadedPolicy>,
    pub weight: u32,
    pub shadow: bool,
}

impl Variant {
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
        let serving: Vec<&Arc<Variant>> = self.variants.iter().filter(|v| !v.shadow && v.weight > 0).collect();
        let total: u64 = serving.iter().map(|v| u64::from(v.weight)).sum();
        let mut point = bucket(&self.experiment, username) % total.max(1);
        let mut answer = None;
        for v in serving {
            if point < u64::from(v.weight) {
                answer = Some(v.clone());
                break;
            }
            point -= u64::from(v.weight);
        }
        let shadows = self.variants.iter().filter(|v| v.shadow).cloned().collect();
        Some(Route { answer: answer?, shadows })
    }

    pub fn variant(&self, name: &str) -> Option<&Arc<Variant>> {
        self.variants.iter().find(|v| v.name == name)
    }
}

/// Stable position of a user in the experiment: the first 8 bytes of
/// sha256(experiment, 0, username).
fn bucket(experiment: &str, username: &str) -> u64 {
    let digest = Sha256::new().chain_update(experiment).chain_update([0]).chain_update(username).finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_spread() {
        assert_eq!(bucket("e1", "alice"), bucket("e1", "alice"));
        assert_ne!(bucket("e1", "alice"), bucket("e2", "alice"));
        // 10 % of 10 000 users land in a 10/100 slice, give or take.
        let in_slice = (0..10_000).filter(|i| bucket("e1", &format!("user{i}")) % 100 < 10).count();
        assert!((850..1150).contains(&in_slice), "{in_slice}");
    }
}
