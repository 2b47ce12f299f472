//! Backtesting: a candidate policy decides again on the evidence of recorded
//! decisions, and the report says what would change. With ground-truth labels
//! (genuine / impostor per request), each variant and the candidate get a
//! confusion matrix, whose rates (genuine approved, impostor approved) carry a
//! 95 % interval in the JSON: Wilson's, or the rule of three with no error.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::experiment::{Interval, wilson};
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

/// Approvals and rejections against the truth. Serialized with the four counts and,
/// for each class, its approval rate and that rate's interval ([`rate_interval`]):
/// `genuine_approved_rate`, `genuine_approved_interval`, `impostor_approved_rate`,
/// `impostor_approved_interval` (`null` rate and `[0, 1]` with no attempt of the class).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Confusion {
    pub genuine_approved: u64,
    pub genuine_rejected: u64,
    pub impostor_approved: u64,
    pub impostor_rejected: u64,
}

/// A 95 % interval on a rate and how it was made.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RateInterval {
    pub low: f64,
    pub high: f64,
    /// `wilson`, `rule-of-three` (no error: `[0, 3/n]`, or `[1 - 3/n, 1]` when all
    /// were approved) or `none` (no attempt).
    pub method: &'static str,
}

/// The interval of `k` of `n`: the rule of three when nothing went the other way
/// (`k` = 0 or `k` = `n`), Wilson's score interval otherwise.
pub fn rate_interval(k: u64, n: u64) -> RateInterval {
    if n == 0 {
        return RateInterval { low: 0.0, high: 1.0, method: "none" };
    }
    let three = (3.0 / n as f64).min(1.0);
    if k == 0 {
        return RateInterval { low: 0.0, high: three, method: "rule-of-three" };
    }
    if k == n {
        return RateInterval { low: 1.0 - three, high: 1.0, method: "rule-of-three" };
    }
    let Interval { low, high } = wilson(k, n);
    RateInterval { low, high, method: "wilson" }
}

impl Serialize for Confusion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("Confusion", 8)?;
        s.serialize_field("genuine_approved", &self.genuine_approved)?;
        s.serialize_field("genuine_rejected", &self.genuine_rejected)?;
        s.serialize_field("impostor_approved", &self.impostor_approved)?;
        s.serialize_field("impostor_rejected", &self.impostor_rejected)?;
        s.serialize_field("genuine_approved_rate", &self.genuine_approved_rate())?;
        s.serialize_field("genuine_approved_interval", &self.genuine_approved_interval())?;
        s.serialize_field("impostor_approved_rate", &self.impostor_approved_rate())?;
        s.serialize_field("impostor_approved_interval", &self.impostor_approved_interval())?;
        s.end()
    }
}

/// The rates and their intervals (the admin API's replay answer shows them too).
impl Confusion {
    fn genuine(&self) -> u64 {
        self.genuine_approved + self.genuine_rejected
    }

    fn impostor(&self) -> u64 {
        self.impostor_approved + self.impostor_rejected
    }

    /// Genuine attempts approved, of those labelled genuine (`None` without any).
    pub fn genuine_approved_rate(&self) -> Option<f64> {
        (self.genuine() > 0).then(|| self.genuine_approved as f64 / self.genuine() as f64)
    }

    pub fn genuine_approved_interval(&self) -> RateInterval {
        rate_interval(self.genuine_approved, self.genuine())
    }

    /// Impostor attempts approved, of those labelled impostor (`None` without any).
    pub fn impostor_approved_rate(&self) -> Option<f64> {
        (self.impostor() > 0).then(|| self.impostor_approved as f64 / self.impostor() as f64)
    }

    pub fn impostor_approved_interval(&self) -> RateInterval {
        rate_interval(self.impostor_approved, self.impostor())
    }
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
    /// Which recorded decisions the candidate would decide otherwise (approval or
    /// reason), in the order replayed, the first `FLIPS_LISTED` of `changed`: what
    /// a rollout would flip, each to be looked up by its request id
    /// (`GET /api/admin/decisions?request_id=`).
    pub flips: Vec<Flip>,
}

/// Flipped decisions listed in a report; `changed` counts them all.
pub const FLIPS_LISTED: usize = 1000;

/// A recorded decision the candidate decides otherwise.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flip {
    pub request_id: String,
    /// When it was decided, Unix ms.
    pub at_ms: i64,
    pub endpoint: &'static str,
    /// The variant that answered it.
    pub variant: String,
    pub recorded_approved: bool,
    pub recorded_reason: String,
    pub replayed_approved: bool,
    pub replayed_reason: String,
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
            if report.flips.len() < FLIPS_LISTED {
                report.flips.push(Flip {
                    request_id: record.request_id.clone(),
                    at_ms: record.at_ms,
                    endpoint: record.endpoint.as_str(),
                    variant: record.variant.clone(),
                    recorded_approved,
                    recorded_reason: recorded_reason.clone(),
                    replayed_approved: approved,
                    replayed_reason: reason.clone(),
                });
            }
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

    #[test]
    fn confusion_rates_carry_their_interval() {
        let close = |a: f64, b: f64| (a - b).abs() < 5e-4;
        // Newcombe (1998): 81/263 -> 0.2553-0.3662 (Wilson).
        let c = Confusion { genuine_approved: 81, genuine_rejected: 182, impostor_approved: 0, impostor_rejected: 150 };
        let json = serde_json::to_value(c).expect("json");
        // The counts as before.
        assert_eq!((json["genuine_approved"].as_u64(), json["impostor_rejected"].as_u64()), (Some(81), Some(150)));
        let g = &json["genuine_approved_interval"];
        assert_eq!(g["method"], "wilson");
        let (low, high) = (g["low"].as_f64().expect("low"), g["high"].as_f64().expect("high"));
        assert!(close(low, 0.2553) && close(high, 0.3662), "{g}");
        assert!(close(json["genuine_approved_rate"].as_f64().expect("rate"), 81.0 / 263.0));
        // No impostor approved: the rule of three, [0, 3/150].
        let i = &json["impostor_approved_interval"];
        assert_eq!(
            (i["method"].as_str(), i["low"].as_f64(), i["high"].as_f64()),
            (Some("rule-of-three"), Some(0.0), Some(0.02))
        );
        // Every genuine approved: [1 - 3/n, 1]; no attempt of a class: none.
        let all = rate_interval(10, 10);
        assert!(close(all.low, 0.7) && all.high == 1.0 && all.method == "rule-of-three", "{all:?}");
        let none = serde_json::to_value(Confusion { genuine_approved: 3, ..Default::default() }).expect("json");
        assert!(none["impostor_approved_rate"].is_null() && none["impostor_approved_interval"]["method"] == "none");
        // A replay report's tallies carry them.
        let mut t = Tally::default();
        t.add(true, "AUTHENTIFICATION_SUCCESS", Some(Truth::Genuine));
        let json = serde_json::to_value(&t).expect("json");
        assert_eq!(json["confusion"]["genuine_approved_interval"]["high"], 1.0);
    }
}
