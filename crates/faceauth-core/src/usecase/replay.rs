//! Backtesting: a candidate policy decides again on the evidence of recorded
//! decisions, and the report says what would change. With ground-truth labels
//! (genuine / impostor per request), each variant and the candidate get a
//! confusion matrix.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::policy::{LoadedPolicy, Outcome};
use crate::store::audit::{DecisionRecord, RecordedEvidence};

/// Ground truth of a request: was it the enrolled person (or a real ID), or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    Genuine,
    Impostor,
}

/// Labels by request id, from CSV lines `request_id,label` (label `genuine`,
/// `bona_fide` or `1`; `impostor`, `attack` or `0`). A header line is skipped.
pub fn parse_labels(csv: &str) -> Result<HashMap<String, Truth>, String> {
    let mut labels = HashMap::new();
    for (i, line) in csv.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.starts_with("request_id")) {
            continue;
        }
        let (id, label) = line.split_once(',').ok_or_else(|| format!("line {}: expected request_id,label", i + 1))?;
        let truth = match label.trim().to_ascii_lowercase().as_str() {
            "genuine" | "bona_fide" | "1" => Truth::Genuine,
            "impostor" | "attack" | "0" => Truth::Impostor,
            other => return Err(format!("line {}: unknown label {other:?}", i + 1)),
        };
        labels.insert(id.trim().to_string(), truth);
    }
    Ok(labels)
}

/// Approvals and rejections against the truth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Confusion {
    pub genuine_approved: u64,
    pub genuine_rejected: u64,
    pub impostor_approved: u64,
    pub impostor_rejected: u64,
}

impl Confusion {
    fn add(&mut self, truth: Truth, approved: bool) {
        match (truth, approved) {
            (Truth::Genuine, true) => self.genuine_approved += 1,
            (Truth::Genuine, false) => self.genuine_rejected += 1,
            (Truth::Impostor, true) => self.impostor_approved += 1,
            (Truth::Impostor, false) => self.impostor_rejected += 1,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    pub approved: u64,
    pub rejected: u64,
    pub reasons: BTreeMap<String, u64>,
    /// Only when labels were given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confusion: Option<Confusion>,
}

impl Tally {
    fn add(&mut self, approved: bool, reason: &str, truth: Option<Truth>) {
        if approved {
            self.approved += 1;
        } else {
            self.rejected += 1;
        }
        *self.reasons.entry(reason.to_string()).or_default() += 1;
        if let Some(t) = truth {
            self.confusion.get_or_insert_with(Confusion::default).add(t, approved);
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplayReport {
    pub candidate: String,
    /// Recorded answers replayed.
    pub decisions: u64,
    /// Records whose evidence could not be read (written by an older interface).
    pub unreadable: u64,
    pub recorded: Tally,
    pub replayed: Tally,
    /// Per recorded variant: what it decided and what the candidate decides on the same requests.
    pub per_variant: BTreeMap<String, VariantReplay>,
    pub changed: u64,
    pub approve_to_reject: u64,
    pub reject_to_approve: u64,
    /// `"OLD_REASON -> NEW_REASON"`: count.
    pub reason_changes: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VariantReplay {
    pub recorded: Tally,
    pub replayed: Tally,
}

/// Runs `candidate` on every recorded answer (shadow records are skipped: their
/// evidence is the answer's). Blocking: policy calls run in this thread.
pub fn replay(candidate: &LoadedPolicy, records: &[DecisionRecord], labels: &HashMap<String, Truth>) -> ReplayReport {
    let info = candidate.info();
    let mut report = ReplayReport { candidate: format!("{}@{}", info.name, info.version), ..Default::default() };
    for record in records.iter().filter(|r| !r.shadow) {
        let RecordedEvidence::Readable(evidence) = &record.evidence else {
            report.unreadable += 1;
            continue;
        };
        let replayed = Outcome::from_decision(&candidate.decide_blocking(evidence));
        let (approved, reason) = (replayed.approved(), replayed.reason().to_string());
        let recorded_reason = record.outcome.reason().to_string();
        let recorded_approved = record.outcome.approved();
        let truth = labels.get(&record.request_id).copied();
        report.decisions += 1;
        report.recorded.add(recorded_approved, &recorded_reason, truth);
        report.replayed.add(approved, &reason, truth);
        let per = report.per_variant.entry(record.variant.clone()).or_default();
        per.recorded.add(recorded_approved, &recorded_reason, truth);
        per.replayed.add(approved, &reason, truth);
        if approved != recorded_approved || reason != recorded_reason {
            report.changed += 1;
            *report.reason_changes.entry(format!("{recorded_reason} -> {reason}")).or_default() += 1;
        }
        match (recorded_approved, approved) {
            (true, false) => report.approve_to_reject += 1,
            (false, true) => report.reject_to_approve += 1,
            _ => {}
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_and_refuse_unknown_values() {
        let labels = parse_labels("request_id,label\nr1,genuine\nr2, attack\n\nr3,1\n").expect("valid");
        assert_eq!(labels.len(), 3);
        assert_eq!(labels["r2"], Truth::Impostor);
        assert_eq!(labels["r3"], Truth::Genuine);
        assert!(parse_labels("r1,maybe").unwrap_err().contains("unknown label"));
        assert!(parse_labels("r1").is_err());
    }

    #[test]
    fn confusion_counts_each_cell() {
        let mut t = Tally::default();
        t.add(true, "AUTHENTIFICATION_SUCCESS", Some(Truth::Genuine));
        t.add(false, "FACE_MISMATCH", Some(Truth::Impostor));
        t.add(true, "AUTHENTIFICATION_SUCCESS", Some(Truth::Impostor));
        t.add(false, "FACE_MISMATCH", None);
        let c = t.confusion.expect("labelled");
        assert_eq!((c.genuine_approved, c.genuine_rejected, c.impostor_approved, c.impostor_rejected), (1, 0, 1, 1));
        assert_eq!((t.approved, t.rejected), (2, 2));
        assert_eq!(t.reasons["FACE_MISMATCH"], 2);
    }
}
