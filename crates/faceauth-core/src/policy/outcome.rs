//! What goes through the policy boundary and what comes out of a request, typed:
//! the evidence of either use case (`Evidence`) and what the client was answered
//! (`Outcome`: a policy decision, or the failure that replaced it). The audit log
//! stores both as such and reads them back with `Evidence::from_stored` and
//! `Outcome::from_stored`; stats, replay and the admin API use these types, never
//! the stored strings.

use std::sync::Arc;

use super::{AuthenticateEvidence, Decision, EnrollEvidence, LoadedPolicy, PolicyError};

/// Which use case asked for a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    Enroll,
    Authenticate,
}

impl Endpoint {
    /// The name stored in the audit log and shown by the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Enroll => "enroll",
            Endpoint::Authenticate => "authenticate",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "enroll" => Some(Endpoint::Enroll),
            "authenticate" => Some(Endpoint::Authenticate),
            _ => None,
        }
    }
}

/// The evidence of either use case, as the policies receive it. Serialised
/// adjacently tagged (`{"endpoint": "enroll", "evidence": {...}}`); the audit log
/// keeps the two halves in its `endpoint` and `evidence` columns.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "endpoint", content = "evidence", rename_all = "lowercase")]
pub enum Evidence {
    Enroll(EnrollEvidence),
    Authenticate(AuthenticateEvidence),
}

impl Evidence {
    pub fn endpoint(&self) -> Endpoint {
        match self {
            Evidence::Enroll(_) => Endpoint::Enroll,
            Evidence::Authenticate(_) => Endpoint::Authenticate,
        }
    }

    /// The evidence alone as JSON (the audit log's `evidence` column).
    pub fn to_stored(&self) -> Result<String, serde_json::Error> {
        match self {
            Evidence::Enroll(e) => serde_json::to_string(e),
            Evidence::Authenticate(e) => serde_json::to_string(e),
        }
    }

    /// The one reader of stored evidence: `json` as the evidence of `endpoint`.
    /// Rows written by an older interface fail here, with serde's reason.
    pub fn from_stored(endpoint: Endpoint, json: &str) -> Result<Self, serde_json::Error> {
        let value: serde_json::Value = serde_json::from_str(json)?;
        // serde narrows 1e39 to an f32 infinity, which would be written back as null
        // and then never read again (found by fuzz/evidence_json): refused here.
        if let Some(number) = beyond_f32(&value) {
            return Err(serde::de::Error::custom(format!("number {number} is beyond the range of the evidence")));
        }
        Ok(match endpoint {
            Endpoint::Enroll => Evidence::Enroll(serde_json::from_value(value)?),
            Endpoint::Authenticate => Evidence::Authenticate(serde_json::from_value(upgraded(value))?),
        })
    }
}

/// Authentication evidence recorded before interface 0.4.0 has no face track: an
/// empty one (as a still image's), so that older decisions can still be replayed.
/// The new `option` fields (`brightness`) read as none by themselves.
pub(super) fn upgraded(mut value: serde_json::Value) -> serde_json::Value {
    if let Some(frames) = value.get_mut("frames").and_then(serde_json::Value::as_array_mut) {
        for frame in frames.iter_mut().filter_map(serde_json::Value::as_object_mut) {
            frame.entry("earlier_similarities").or_insert_with(|| serde_json::Value::Array(Vec::new()));
        }
    }
    value
}

/// The first number in `value` that an `f32` cannot hold.
fn beyond_f32(value: &serde_json::Value) -> Option<&serde_json::Number> {
    match value {
        serde_json::Value::Number(n) => n.as_f64().is_some_and(|x| x.abs() > f64::from(f32::MAX)).then_some(n),
        serde_json::Value::Array(items) => items.iter().find_map(beyond_f32),
        serde_json::Value::Object(fields) => fields.values().find_map(beyond_f32),
        _ => None,
    }
}

/// Why no policy decision was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Failure {
    /// The policy trapped, ran out of budget or returned an invalid decision: the
    /// request is refused (fail closed).
    PolicyError,
    /// An approved enrollment lost the race for its username.
    UsernameAlreadyExists,
    /// An approved enrollment could not be stored.
    StoreError,
}

impl Failure {
    /// The reason code the client receives.
    pub fn code(self) -> &'static str {
        match self {
            Failure::PolicyError => "POLICY_ERROR",
            Failure::UsernameAlreadyExists => "USERNAME_ALREADY_EXISTS",
            Failure::StoreError => "STORE_ERROR",
        }
    }

    fn parse(code: &str) -> Option<Self> {
        [Failure::PolicyError, Failure::UsernameAlreadyExists, Failure::StoreError]
            .into_iter()
            .find(|f| f.code() == code)
    }
}

/// What a request was answered, as the audit log, the statistics and replay see it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The policy decided and that decision was answered.
    Decided(Decision),
    /// A refusal that is no policy decision, with its error message.
    Failed { failure: Failure, message: String },
}

impl Outcome {
    pub fn approved(&self) -> bool {
        matches!(self, Outcome::Decided(d) if d.approved)
    }

    /// The reason code: the policy's, or the failure's.
    pub fn reason(&self) -> &str {
        match self {
            Outcome::Decided(d) => &d.reason,
            Outcome::Failed { failure, .. } => failure.code(),
        }
    }

    pub fn score(&self) -> Option<f32> {
        match self {
            Outcome::Decided(d) => d.score,
            Outcome::Failed { .. } => None,
        }
    }

    /// The failure's message, if this is one.
    pub fn error(&self) -> Option<&str> {
        match self {
            Outcome::Decided(_) => None,
            Outcome::Failed { message, .. } => Some(message),
        }
    }

    pub fn is_policy_error(&self) -> bool {
        matches!(self, Outcome::Failed { failure: Failure::PolicyError, .. })
    }

    /// A policy call's result as answered: a failed call refuses the request.
    pub fn from_decision(decision: &Result<Decision, PolicyError>) -> Self {
        match decision {
            Ok(d) => Outcome::Decided(d.clone()),
            Err(e) => Outcome::Failed { failure: Failure::PolicyError, message: crate::errors::error_chain(e) },
        }
    }

    /// The one reader of the audit log's `approved`, `reason`, `score` and `error`
    /// columns: a row with an error is a failure.
    pub fn from_stored(approved: bool, reason: String, score: Option<f64>, error: Option<String>) -> Self {
        match (error, Failure::parse(&reason)) {
            (Some(message), Some(failure)) => Outcome::Failed { failure, message },
            _ => Outcome::Decided(Decision { approved, reason, score: score.map(|s| s as f32) }),
        }
    }
}

/// One dispatch of evidence to the policy's function for its use case.
impl LoadedPolicy {
    /// Decides on a blocking thread, bounded by the runtime's semaphore.
    pub async fn decide(self: &Arc<Self>, evidence: Evidence) -> Result<Decision, PolicyError> {
        match evidence {
            Evidence::Enroll(e) => self.decide_enroll(e).await,
            Evidence::Authenticate(e) => self.decide_authenticate(e).await,
        }
    }

    /// Decides in this thread (tools, replay).
    pub fn decide_blocking(&self, evidence: &Evidence) -> Result<Decision, PolicyError> {
        match evidence {
            Evidence::Enroll(e) => self.decide_enroll_blocking(e),
            Evidence::Authenticate(e) => self.decide_authenticate_blocking(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ImageSize;

    #[test]
    fn evidence_round_trips_through_its_columns() {
        let evidence = Evidence::Enroll(EnrollEvidence {
            image: ImageSize { width: 3, height: 2 },
            faces: vec![],
            duplicates: None,
        });
        let stored = evidence.to_stored().expect("serialises");
        assert_eq!(Evidence::from_stored(evidence.endpoint(), &stored).expect("reads"), evidence);
        // The evidence of one use case is not the other's.
        assert!(Evidence::from_stored(Endpoint::Authenticate, &stored).is_err());
        let tagged = serde_json::to_value(&evidence).expect("json");
        assert_eq!(tagged["endpoint"], "enroll");
    }

    /// Found by `fuzz/evidence_json` (corpus/evidence_json/crash-f32-overflow-enroll-min.json):
    /// 1e39 read as an f32 infinity, stored as null, then unreadable.
    #[test]
    fn evidence_beyond_f32_is_refused_on_reading() {
        let json = include_str!("../../../../fuzz/corpus/evidence_json/crash-f32-overflow-enroll-min.json");
        let err = Evidence::from_stored(Endpoint::Enroll, json).expect_err("1e39 is no f32");
        assert!(err.to_string().contains("beyond the range"), "{err}");
        // What is read is written back in a form that reads again.
        let fine = json.replace("1e39", "0.75");
        let evidence = Evidence::from_stored(Endpoint::Enroll, &fine).expect("reads");
        let stored = evidence.to_stored().expect("writes");
        assert_eq!(Evidence::from_stored(Endpoint::Enroll, &stored).expect("reads again"), evidence);
    }

    #[test]
    fn outcomes_round_trip_through_their_columns() {
        let decided = Outcome::Decided(Decision { approved: true, reason: "OK".into(), score: Some(0.5) });
        let failed = Outcome::Failed { failure: Failure::PolicyError, message: "wasm trap: unreachable".into() };
        for outcome in [decided, failed] {
            let back = Outcome::from_stored(
                outcome.approved(),
                outcome.reason().to_string(),
                outcome.score().map(f64::from),
                outcome.error().map(str::to_string),
            );
            assert_eq!(back, outcome);
        }
        // A policy may name its own reason after a failure's code: without an error it is a decision.
        let own = Outcome::from_stored(false, "STORE_ERROR".into(), None, None);
        assert!(matches!(own, Outcome::Decided(_)));
    }
}
