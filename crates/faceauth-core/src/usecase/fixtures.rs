//! `faceauth policy test`: a policy run over recorded evidence with the outcomes
//! its author expects (like `opa test`), before it takes traffic.
//!
//! A fixture is one JSON file (or a JSON array of them):
//!
//! ```json
//! {
//!   "name": "a stranger's selfie is refused",
//!   "endpoint": "authenticate",
//!   "evidence": { "media": "Image", "frames": [...], ... },
//!   "params": { "match-threshold": 0.5 },
//!   "expect": { "decision": "REJECTED", "reason": "FACE_MISMATCH" }
//! }
//! ```
//!
//! `endpoint` and `evidence` are what `GET /api/admin/decisions` shows of a recorded
//! decision (and what the audit log keeps), so a real request becomes a fixture by
//! copying them. `params` (optional) are overrides on top of the command's own;
//! `expect` names the decision, the reason or both, and optionally a score range.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::policy::{CompiledPolicy, Endpoint, Evidence, Outcome, Param};

/// One expected outcome.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// `APPROVED` or `REJECTED`.
    #[serde(default)]
    pub decision: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub score_at_least: Option<f32>,
    #[serde(default)]
    pub score_below: Option<f32>,
}

/// One fixture as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureFile {
    name: String,
    endpoint: String,
    evidence: serde_json::Value,
    #[serde(default)]
    params: BTreeMap<String, f64>,
    expect: Expectation,
}

/// A fixture read and checked.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub name: String,
    pub evidence: Evidence,
    pub params: Vec<Param>,
    pub expect: Expectation,
}

/// Fixtures from the text of one file: one object or an array of them. `source`
/// names the file in errors.
pub fn parse_fixtures(text: &str, source: &str) -> Result<Vec<Fixture>, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("{source}: {e}"))?;
    let items = match value {
        serde_json::Value::Array(items) => items,
        one => vec![one],
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let at = |e: String| format!("{source}, fixture {}: {e}", i + 1);
            let file: FixtureFile = serde_json::from_value(item).map_err(|e| at(e.to_string()))?;
            let endpoint = Endpoint::parse(&file.endpoint)
                .ok_or_else(|| at(format!("endpoint {:?}: expected enroll or authenticate", file.endpoint)))?;
            let evidence = Evidence::from_stored(endpoint, &file.evidence.to_string())
                .map_err(|e| at(format!("{}: evidence: {e}", file.name)))?;
            if let Some(d) = &file.expect.decision
                && d != "APPROVED"
                && d != "REJECTED"
            {
                return Err(at(format!("{}: expect.decision {d:?}: expected APPROVED or REJECTED", file.name)));
            }
            let e = &file.expect;
            if e.decision.is_none() && e.reason.is_none() && e.score_at_least.is_none() && e.score_below.is_none() {
                return Err(at(format!("{}: expect names nothing to check", file.name)));
            }
            let params = file.params.into_iter().map(|(name, value)| Param { name, value }).collect();
            Ok(Fixture { name: file.name, evidence, params, expect: file.expect })
        })
        .collect()
}

/// What a fixture gave.
#[derive(Debug, Clone)]
pub struct FixtureResult {
    pub name: String,
    pub outcome: Outcome,
    /// Why it failed; `None`: as expected.
    pub failure: Option<String>,
}

/// Runs each fixture through `policy` with `overrides` and then the fixture's own
/// parameters (a variant built per parameter set: checked and self-checked like any
/// variant). Blocking: the calls run in this thread.
pub fn run_fixtures(policy: &CompiledPolicy, overrides: &[Param], fixtures: &[Fixture]) -> Vec<FixtureResult> {
    let mut variants: Vec<(Vec<Param>, Result<crate::policy::LoadedPolicy, String>)> = Vec::new();
    fixtures
        .iter()
        .map(|fixture| {
            let params: Vec<Param> = overrides.iter().chain(&fixture.params).cloned().collect();
            let same = |p: &[Param]| {
                p.len() == params.len() && p.iter().zip(&params).all(|(a, b)| a.name == b.name && a.value == b.value)
            };
            let index = match variants.iter().position(|(p, _)| same(p)) {
                Some(i) => i,
                None => {
                    let built = policy.variant(&params).map_err(|e| crate::errors::error_chain(&e));
                    variants.push((params, built));
                    variants.len() - 1
                }
            };
            let outcome = match &variants[index].1 {
                Ok(variant) => Outcome::from_decision(&variant.decide_blocking(&fixture.evidence)),
                Err(e) => {
                    return FixtureResult {
                        name: fixture.name.clone(),
                        outcome: Outcome::Failed { failure: crate::policy::Failure::PolicyError, message: e.clone() },
                        failure: Some(format!("the variant was refused: {e}")),
                    };
                }
            };
            let failure = mismatch(&fixture.expect, &outcome);
            FixtureResult { name: fixture.name.clone(), outcome, failure }
        })
        .collect()
}

/// How `outcome` differs from `expect`, if it does.
fn mismatch(expect: &Expectation, outcome: &Outcome) -> Option<String> {
    let decision = if outcome.approved() { "APPROVED" } else { "REJECTED" };
    let got = match (outcome.score(), outcome.error()) {
        (_, Some(error)) => format!("{decision} {} ({error})", outcome.reason()),
        (Some(score), None) => format!("{decision} {} (score {score:.4})", outcome.reason()),
        (None, None) => format!("{decision} {}", outcome.reason()),
    };
    let mut wrong = Vec::new();
    if let Some(d) = &expect.decision
        && d != decision
    {
        wrong.push(format!("decision {d}"));
    }
    if let Some(r) = &expect.reason
        && r != outcome.reason()
    {
        wrong.push(format!("reason {r}"));
    }
    let score = outcome.score();
    if let Some(min) = expect.score_at_least
        && !score.is_some_and(|s| s >= min)
    {
        wrong.push(format!("score >= {min}"));
    }
    if let Some(max) = expect.score_below
        && !score.is_some_and(|s| s < max)
    {
        wrong.push(format!("score < {max}"));
    }
    (!wrong.is_empty()).then(|| format!("expected {}, got {got}", wrong.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Decision;

    const STRANGER: &str = include_str!("../policy/selfcheck/authenticate_stranger.json");

    fn fixture_text(expect: &str) -> String {
        format!(r#"{{"name": "stranger", "endpoint": "authenticate", "evidence": {STRANGER}, "expect": {expect}}}"#)
    }

    #[test]
    fn fixtures_parse_as_one_or_many_and_refuse_what_checks_nothing() {
        let one = fixture_text(r#"{"decision": "REJECTED"}"#);
        assert_eq!(parse_fixtures(&one, "f.json").expect("one").len(), 1);
        assert_eq!(parse_fixtures(&format!("[{one}, {one}]"), "f.json").expect("two").len(), 2);
        let empty = parse_fixtures(&fixture_text("{}"), "f.json").unwrap_err();
        assert!(empty.contains("expect names nothing"), "{empty}");
        let wrong = parse_fixtures(&fixture_text(r#"{"decision": "DENIED"}"#), "f.json").unwrap_err();
        assert!(wrong.contains("APPROVED or REJECTED"), "{wrong}");
        let typo = parse_fixtures(&fixture_text(r#"{"reasn": "X"}"#), "f.json").unwrap_err();
        assert!(typo.contains("f.json, fixture 1") && typo.contains("reasn"), "{typo}");
        let endpoint = parse_fixtures(&one.replace("\"authenticate\"", "\"login\""), "f.json").unwrap_err();
        assert!(endpoint.contains("enroll or authenticate"), "{endpoint}");
    }

    #[test]
    fn a_mismatch_names_what_was_expected_and_what_came() {
        let refused = Outcome::Decided(Decision { approved: false, reason: "FACE_MISMATCH".into(), score: Some(0.1) });
        let expect = |decision: Option<&str>, reason: Option<&str>| Expectation {
            decision: decision.map(String::from),
            reason: reason.map(String::from),
            score_at_least: None,
            score_below: None,
        };
        assert_eq!(mismatch(&expect(Some("REJECTED"), Some("FACE_MISMATCH")), &refused), None);
        let wrong = mismatch(&expect(Some("APPROVED"), None), &refused).expect("differs");
        assert_eq!(wrong, "expected decision APPROVED, got REJECTED FACE_MISMATCH (score 0.1000)");
        let below = Expectation { score_below: Some(0.05), ..expect(None, None) };
        assert!(mismatch(&below, &refused).is_some());
        let at_least = Expectation { score_at_least: Some(0.1), ..expect(None, None) };
        assert_eq!(mismatch(&at_least, &refused), None);
    }
}
