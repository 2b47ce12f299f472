//! The JSON answers of the API, as the tests expect them to the letter.

use serde_json::{Value, json};

/// `/api/enroll` refusing, for `reason`.
pub fn enroll_rejected(reason: &str) -> Value {
    json!({"trained": "failed", "EnrollStatus": "REJECTED", "DecisionReason": reason})
}

/// `/api/enroll` storing the user.
pub fn enrolled() -> Value {
    json!({"trained": "success", "EnrollStatus": "APPROVED", "DecisionReason": "ENROLLED_AS_USER"})
}

/// `/api/authentificate` refusing, for `reason` (no score).
pub fn auth_rejected(reason: &str) -> Value {
    json!({"score": null, "Decision": "REJECTED", "DecisionReason": reason})
}

/// An approved authentication (status 200, exactly `score`, `Decision`,
/// `DecisionReason`); its score.
pub fn assert_approved(answer: &(u16, Value)) -> f64 {
    assert_eq!(answer.0, 200, "{answer:?}");
    assert_eq!(answer.1["Decision"], "APPROVED", "{answer:?}");
    assert_eq!(answer.1["DecisionReason"], "AUTHENTIFICATION_SUCCESS");
    assert_eq!(answer.1.as_object().map(|o| o.len()), Some(3), "exact shape: {answer:?}");
    answer.1["score"].as_f64().expect("numeric score")
}

/// An admin action done (`/api/reset`).
pub fn done() -> Value {
    json!({"code": 200, "msg": "DONE"})
}

/// An admin endpoint refusing a request without the configured token (status 401).
pub fn admin_token_required() -> Value {
    json!({"code": 401, "msg": "ERROR_DETECTED : a valid admin token is required"})
}

/// An admin endpoint refusing a peer that is not on loopback, no token being
/// configured (status 403).
pub fn admin_loopback_only() -> Value {
    json!({"code": 403, "msg": "ERROR_DETECTED : admin endpoints answer loopback clients only"})
}
