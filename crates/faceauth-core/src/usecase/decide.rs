//! How a request is decided: the answering variant decides and is recorded (an
//! approved enrollment stored first), then the shadows decide off the request's path.

use super::attempts::Reservation;
use super::gallery::EnrollmentGuard;
use super::service::store_call;
use super::{FaceAuth, UseCaseError, stats};
use crate::policy::router::{Route, Variant};
use crate::policy::{Decision, Endpoint, Evidence, Failure, Outcome, PolicyError};
use crate::store::audit::{DecisionRecord, RecordedEvidence};
use crate::store::now_ms;
use crate::telemetry::{self, Stage};
use crate::vision::FaceEmbedding;

/// A decision made, with how long the policy took.
struct Decided {
    decision: Result<Decision, PolicyError>,
    policy_ms: f64,
}

async fn decide(variant: &Variant, evidence: &Evidence) -> Decided {
    let started = std::time::Instant::now();
    let decision = variant.policy.decide(evidence.clone()).await;
    let elapsed = started.elapsed();
    telemetry::observe_stage(Stage::Policy, elapsed);
    Decided { decision, policy_ms: elapsed.as_secs_f64() * 1000.0 }
}

impl DecisionRecord {
    /// This record with `variant`'s decision in it.
    fn with_outcome(self, variant: &Variant, decided: &Decided, shadow: bool) -> Self {
        DecisionRecord {
            variant: variant.name.clone(),
            policy: variant.policy_label(),
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
        let decided = decide(&route.answer, &evidence).await;
        let mut answer = DecisionRecord {
            request_id: id,
            at_ms: now_ms(),
            username: username.to_string(),
            endpoint: evidence.endpoint(),
            variant: String::new(),
            policy: String::new(),
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
            let (audit, shadows) = (self.audit.clone(), route.shadows.clone());
            tokio::spawn(async move {
                for variant in &shadows {
                    let decided = decide(variant, &evidence).await;
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
