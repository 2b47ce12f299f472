//! The limit on failed authentications per username: an attempt is reserved before
//! its analysis and released unless its decision is recorded in its place.

use super::service::store_call;
use super::{FaceAuth, UseCaseError};
use crate::store::audit::{self as audit_log, AuditLog, Reserved};

/// Refused authentications allowed per username within a window (after the last
/// approved one); more are answered 429 TOO_MANY_ATTEMPTS before any analysis.
///
/// What counts (`DecisionRecord::counts_as_attempt`): an authentication the policy
/// refused although it showed a face. A face shown is a guess at the user's face,
/// whatever the policy's reason: `FACE_MISMATCH`, `LIVENESS_CHECK_FAILED` (a photo or
/// screen of the user held up: the very attack to limit) and `MULTIPLE_FACES_DETECTED`
/// (several guesses at once) count. An upload without any face (`NO_FACE_DETECTED`:
/// five blank 249-byte PNGs locked a user out for 15 minutes), a server failure
/// (`POLICY_ERROR`, busy, timeouts) and an upload that is refused before a decision
/// (undecodable, too large) do not. An approved authentication starts the count again.
///
/// Each attempt is reserved before its analysis, atomically across replicas (see
/// `AuditLog::reserve_attempt`): reservations not yet decided count too, so that at
/// most `max_failures` attempts are analysed however many arrive at once.
#[derive(Debug, Clone, Copy)]
pub struct AttemptLimit {
    pub max_failures: u32,
    pub window: std::time::Duration,
}

impl FaceAuth {
    /// Reserves an attempt of `username` before its analysis, or refuses it 429
    /// when its counted failures and the attempts being decided reach the limit.
    /// `None`: no limit configured.
    pub(super) async fn reserve_attempt(&self, username: &str) -> Result<Option<Reservation>, UseCaseError> {
        let Some(limit) = self.attempts else { return Ok(None) };
        let limit = audit_log::Limit {
            max: limit.max_failures,
            window_ms: limit.window.as_millis().min(i64::MAX as u128) as i64,
        };
        let reserved = match store_call(self.audit.reserve_attempt(username, limit)).await {
            // Refused: nothing was written.
            refused @ Ok(Reserved::Refused { .. }) => refused,
            written => self.watch_write(written),
        }?;
        match reserved {
            Reserved::Granted(id) => Ok(Some(Reservation { audit: self.audit.clone(), id, released: false })),
            Reserved::Refused { retry_after_ms } => {
                Err(UseCaseError::TooManyAttempts { retry_after_s: (retry_after_ms.max(1000) as u64).div_ceil(1000) })
            }
        }
    }
}

/// An attempt reserved before an authentication's analysis (see
/// `AuditLog::reserve_attempt`). Released when dropped, unless its decision was
/// recorded in its place: an error that is no attempt (busy, an undecodable upload,
/// an outdated template, the client gone mid-analysis) must not count.
pub(super) struct Reservation {
    audit: AuditLog,
    pub(super) id: i64,
    pub(super) released: bool,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (audit, id) = (self.audit.clone(), self.id);
        // Off the request's path (it may be ending by cancellation). Not released
        // (no runtime, the database unreachable): it stops counting after
        // `RESERVATION_TTL_MS`.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = audit.release_attempt(id).await {
                    tracing::warn!(error = %e, "an attempt reservation was not released; it expires");
                }
            });
        }
    }
}
