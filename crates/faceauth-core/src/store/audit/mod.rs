//! The audit log: one row per policy decision (the variant that answered and each
//! shadow), with the evidence it decided on as JSON and the latencies. Images are
//! never stored. Rows older than the retention are purged.

mod attempts;
mod queries;
mod records;
#[cfg(test)]
mod tests;

pub use attempts::{Limit, RESERVATION_TTL_MS, Reserved};
pub use queries::AuditLog;
pub use records::{BadCursor, Cursor, DecisionFilter, DecisionPage, DecisionRecord, RecordedEvidence};

pub use crate::policy::Endpoint;
