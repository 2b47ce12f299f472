//! What the audit log holds: one decision as recorded, its evidence as read back,
//! and which decisions to read.

use crate::policy::{Endpoint, Evidence, Outcome};

/// One recorded decision.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRecord {
    /// Shared by the answer and the shadow decisions of one request.
    pub request_id: String,
    /// Unix time, milliseconds.
    pub at_ms: i64,
    pub username: String,
    pub endpoint: Endpoint,
    pub variant: String,
    /// `name@version` of the component.
    pub policy: String,
    /// The component and its effective parameters, hashed (`usecase::decide::params_hash`):
    /// a variant's parameters changed mid-experiment show as another hash. `""` on
    /// rows recorded before it was.
    pub params_hash: String,
    /// A shadow decision was recorded, not answered.
    pub shadow: bool,
    /// What the client was answered (for a shadow: what it would have been).
    pub outcome: Outcome,
    /// The evidence the policy decided on.
    pub evidence: RecordedEvidence,
    /// Decoding and face analysis, milliseconds.
    pub analysis_ms: f64,
    /// The policy call alone.
    pub policy_ms: f64,
    /// The whole use case up to the answer.
    pub total_ms: f64,
}

/// A record's evidence as read back.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordedEvidence {
    /// Not read (`DecisionFilter::without_evidence`).
    Omitted,
    Readable(Evidence),
    /// Written by an older interface: the stored JSON and why it does not read.
    Unreadable {
        json: String,
        error: String,
    },
}

impl RecordedEvidence {
    pub(super) fn read(endpoint: Endpoint, json: String) -> Self {
        match Evidence::from_stored(endpoint, &json) {
            Ok(evidence) => RecordedEvidence::Readable(evidence),
            Err(e) => RecordedEvidence::Unreadable { json, error: e.to_string() },
        }
    }
}

/// Which recorded decisions to read.
#[derive(Debug, Clone, Default)]
pub struct DecisionFilter {
    pub since_ms: Option<i64>,
    pub endpoint: Option<Endpoint>,
    pub variant: Option<String>,
    /// `Some(false)`: answers only; `Some(true)`: shadows only.
    pub shadow: Option<bool>,
    /// Only the decisions of this request (its answer and its shadows).
    pub request_id: Option<String>,
    /// Only the decisions recorded before this one, in the order `at DESC, id DESC`:
    /// the next page after a page that ended at it (`DecisionPage::next`).
    pub before: Option<Cursor>,
    pub limit: Option<i64>,
    /// Leave the evidence out (empty): statistics over many rows need only the rest,
    /// and a video's evidence is some 15 KB.
    pub without_evidence: bool,
}

/// A position in the audit log's order (`at DESC, id DESC`): a row's time and id.
/// The time alone does not do (rows share milliseconds) nor does the id alone (a
/// shadow is recorded after answers of later requests, so ids do not follow `at`).
/// Written `<at_ms>-<id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at_ms: i64,
    pub id: i64,
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.at_ms, self.id)
    }
}

/// A cursor that is not `<at_ms>-<id>`.
#[derive(Debug, thiserror::Error)]
#[error("a cursor is <at_ms>-<id> (the `next` of the previous page), not {0:?}")]
pub struct BadCursor(String);

impl std::str::FromStr for Cursor {
    type Err = BadCursor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // The last '-': a time before 1970 is negative.
        let parsed =
            s.rsplit_once('-').and_then(|(at, id)| Some(Cursor { at_ms: at.parse().ok()?, id: id.parse().ok()? }));
        parsed.ok_or_else(|| BadCursor(s.to_string()))
    }
}

/// One page of recorded decisions.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionPage {
    /// Oldest first.
    pub decisions: Vec<DecisionRecord>,
    /// Where the next (older) page starts (`DecisionFilter::before`); `None` when
    /// no older row matches.
    pub next: Option<Cursor>,
}

impl DecisionRecord {
    /// Whether this decision counts against the attempt limit: an authentication
    /// answered (not a shadow) that the policy refused although its evidence showed
    /// a face. Showing a face is a guess at the user's face, whatever the reason
    /// (`FACE_MISMATCH`; `LIVENESS_CHECK_FAILED`: a photo of the user held up;
    /// `MULTIPLE_FACES_DETECTED`: several guesses at once); a picture without a face
    /// (`NO_FACE_DETECTED`, blank or garbage) is none, and counting it let anyone
    /// lock a user out with five blank PNGs. A server failure (`POLICY_ERROR`) is no
    /// decision and does not count. Unreadable evidence counts (fail closed).
    pub fn counts_as_attempt(&self) -> bool {
        let refused = matches!(&self.outcome, Outcome::Decided(d) if !d.approved);
        let face_shown = match &self.evidence {
            RecordedEvidence::Readable(Evidence::Authenticate(e)) => e.summary.frames_with_face > 0,
            RecordedEvidence::Readable(Evidence::Enroll(_)) => false,
            RecordedEvidence::Unreadable { .. } | RecordedEvidence::Omitted => true,
        };
        self.endpoint == Endpoint::Authenticate && !self.shadow && refused && face_shown
    }
}
