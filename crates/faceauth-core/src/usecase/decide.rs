//! How a request is decided: the answering variant decides and is recorded (an
//! approved enrollment stored first), then the shadows decide off the request's path.

use super::attempts::Reservation;
use super::gallery::EnrollmentGuard;
use super::service::store_call;
use super::{FaceAuth, UseCaseError, stats};
use std::sync::Arc;

use crate::policy::router::{PolicyRouter, Route, Variant};
use crate::policy::{Decision, Endpoint, Evidence, Failure, Outcome, Param, PolicyError};
use crate::store::audit::{DecisionRecord, RecordedEvidence};
use crate::store::now_ms;
use crate::telemetry::{self, Stage};
use crate::vision::FaceEmbedding;
use sha2::{Digest, Sha256};

/// A decision made, with how long the policy took.
struct Decided {
    decision: Result<Decision, PolicyError>,
    policy_ms: f64,
}

/// `variant` decides on live traffic; the router counts its failures (a variant
/// that keeps failing retires itself: `PolicyRouter::observe`).
async fn decide(router: &Arc<PolicyRouter>, variant: &Variant, evidence: &Evidence) -> Decided {
    let started = std::time::Instant::now();
    let decision = variant.policy.decide(evidence.clone()).await;
    router.observe(variant, &decision);
    let elapsed = started.elapsed();
    telemetry::observe_stage(Stage::Policy, elapsed);
    Decided { decision, policy_ms: elapsed.as_secs_f64() * 1000.0 }
}

/// What a decision was made under, for the audit log: the first 16 hex digits of
/// SHA-256 over the component's sha256 and the effective parameters, one
/// `name=value` line each, sorted by name, the value as Rust's `{}` prints an f64
/// (shortest round-trip form, so equal values hash alike). A parameter changed
/// mid-experiment under the same variant name shows as another hash (issue 21).
/// 64 bits: collisions between the few sets a variant goes through do not happen.
pub(crate) fn params_hash(component_sha256: &str, params: &[Param]) -> String {
    let mut sorted: Vec<&Param> = params.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut hasher = Sha256::new();
    hasher.update(component_sha256.as_bytes());
    hasher.update(b"\n");
    for p in sorted {
        hasher.update(format!("{}={}\n", p.name, p.value).as_bytes());
    }
    let digest = format!("{:x}", hasher.finalize());
    digest[..16].to_string()
}

impl DecisionRecord {
    /// This record with `variant`'s decision in it.
    fn with_outcome(self, variant: &Variant, decided: &Decided, shadow: bool) -> Self {
        DecisionRecord {
            variant: variant.name.clone(),
            policy: variant.policy_label(),
            params_hash: params_hash(variant.policy.sha256(), variant.policy.params()),
            shadow,
            // A failed policy is recorded as what a client sees of it: refused.
            outcome: Outcome::from_decision(&decided.decision),
            policy_ms: decided.policy_ms,
            at_ms: if shadow { now_ms() } else { self.at_ms },
            ..self
        }
    }
}

/// What an approved decision stores before it is recorded and answered.
pub(super) enum OnApproval<'a, 'b> {
    Nothing,
    /// The primary face's embedding, if the evidence had a face, stored under the
    /// enrollment's gallery lock.
    Enroll(Option<&'a FaceEmbedding>, &'a mut EnrollmentGuard<'b>),
}

/// Timing of one request, for the audit log.
pub(super) struct Timing {
    pub(super) started: std::time::Instant,
    pub(super) analysis_ms: f64,
}

impl FaceAuth {
    /// The answering variant decides and its decision is recorded; then, off the
    /// request's path, each shadow decides on the same evidence and is recorded.
    /// An authentication whose decision cannot be recorded is refused (its attempt
    /// would not count: on a full disk, 12 of 12 guesses were analysed and answered).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn decide_and_record(
        &self,
        id: String,
        username: &str,
        route: &Route,
        evidence: Evidence,
        timing: Timing,
        on_approval: OnApproval<'_, '_>,
        reservation: Option<Reservation>,
    ) -> Result<Decision, UseCaseError> {
        let decided = decide(self.engine.router(), &route.answer, &evidence).await;
        let mut answer = DecisionRecord {
            request_id: id,
            at_ms: now_ms(),
            username: username.to_string(),
            endpoint: evidence.endpoint(),
            variant: String::new(),
            policy: String::new(),
            params_hash: String::new(),
            shadow: false,
            outcome: Outcome::from_decision(&decided.decision),
            evidence: RecordedEvidence::Readable(evidence.clone()),
            analysis_ms: timing.analysis_ms,
            policy_ms: 0.0,
            total_ms: timing.started.elapsed().as_secs_f64() * 1000.0,
        }
        .with_outcome(&route.answer, &decided, false);
        // An approved enrollment is stored before anything is recorded, and a failed
        // store is recorded as the refusal the client gets: 20 racing enrollments of
        // one name left 19 "approved" rows for 1 stored user (issue 11, defect 6).
        let stored = match (on_approval, &decided.decision) {
            (OnApproval::Enroll(primary, guard), Ok(d)) if d.approved => {
                self.store_enrollment(guard, username, primary).await
            }
            _ => Ok(()),
        };
        if let Err(e) = &stored {
            let failure = match e {
                UseCaseError::DuplicateUsername | UseCaseError::ConfusableUsername => Failure::UsernameAlreadyExists,
                UseCaseError::Policy(_) => Failure::PolicyError,
                _ => Failure::StoreError,
            };
            answer.outcome = Outcome::Failed { failure, message: crate::errors::error_chain(e) };
        }
        stats::observe_decision(&answer);
        let reserved = reservation.as_ref().map(|r| r.id);
        match self.watch_write(store_call(self.audit.record_attempt(&answer, reserved)).await) {
            Ok(()) => {
                if let Some(mut reservation) = reservation {
                    // The decision row took its place (`record_attempt` names and deletes it).
                    reservation.released = true;
                }
            }
            // Not approved, and the attempt left unrecorded had no answer.
            Err(e) if answer.endpoint == Endpoint::Authenticate => {
                tracing::error!(error = %e, request_id = %answer.request_id, "audit log write failed: refused");
                return Err(e.into());
            }
            Err(e) => {
                // An enrollment stored stands; losing its audit row is logged loudly.
                tracing::error!(error = %e, request_id = %answer.request_id, "audit log write failed");
            }
        }
        if !route.shadows.is_empty() {
            let (audit, shadows, router) = (self.audit.clone(), route.shadows.clone(), self.engine.router().clone());
            tokio::spawn(async move {
                for variant in &shadows {
                    let decided = decide(&router, variant, &evidence).await;
                    let record = answer.clone().with_outcome(variant, &decided, true);
                    stats::observe_decision(&record);
                    if let Err(e) = store_call(audit.record(&record)).await {
                        tracing::error!(error = %e, variant = %variant.name, "audit log write of a shadow failed");
                    }
                }
            });
        }
        stored?;
        Ok(decided.decision?)
    }

    /// Stores an approved enrollment's primary face.
    async fn store_enrollment(
        &self,
        guard: &mut EnrollmentGuard<'_>,
        username: &str,
        primary: Option<&FaceEmbedding>,
    ) -> Result<(), UseCaseError> {
        // The policy approved evidence without a face: nothing can be enrolled.
        let embedding = primary.ok_or_else(|| {
            UseCaseError::Policy(PolicyError::InvalidDecision("approved an enrollment without a face".into()))
        })?;
        let version = &self.engine.models.embedding_model_version;
        let written = store_call(async {
            match guard.lock() {
                Some(lock) => self.store.insert_under(lock, username, embedding, version).await?,
                None => self.store.insert(username, embedding, version).await?,
            }
            // Committed before the decision is recorded and answered.
            guard.commit().await
        })
        .await;
        Ok(self.watch_write(written)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(name: &str, value: f64) -> Param {
        Param { name: name.into(), value }
    }

    #[test]
    fn the_params_hash_is_stable_and_changes_with_a_value_or_the_component() {
        let sha = "ab".repeat(32);
        let set = [param("match-threshold", 0.45), param("min-face-size", 80.0)];
        let hash = params_hash(&sha, &set);
        // The documented input hashed by another tool: `sha256sum` over the component's
        // sha256, then `match-threshold=0.45` and `min-face-size=80` (`{}` prints no
        // `.0`), each line ended by `\n`.
        assert_eq!(hash, "cabbe3916571c821");
        assert_eq!(hash.len(), 16);
        // The parameters' order does not matter, a value or the component does.
        let reversed = [param("min-face-size", 80.0), param("match-threshold", 0.45)];
        assert_eq!(params_hash(&sha, &reversed), hash);
        let changed = [param("match-threshold", 0.5), param("min-face-size", 80.0)];
        assert_ne!(params_hash(&sha, &changed), hash);
        assert_ne!(params_hash(&"cd".repeat(32), &set), hash);
        assert_ne!(params_hash(&sha, &[]), hash);
    }
}
