//! 95 % intervals on every rate the eval prints (issue 21), in one place.
//!
//! - **No error** (0 of n, or n of n): the rule of three, `[0, 3/n]` (or
//!   `[1 - 3/n, 1]`): no resampling moves off a rate with no error, and 3/n is the
//!   usual 95 % upper bound (exactly `1 - 0.05^(1/n)` ~ 3/n).
//! - **Subjects named** (LFW names, video person ids, liveness sources; at least two
//!   of them): a subject-level (cluster) percentile bootstrap, the subjects resampled
//!   with replacement [`RESAMPLES`] times from a fixed seed, so the same data prints
//!   the same interval. One person's attempts are not independent (one hard face
//!   fails several times), and resampling people keeps that. The interval is never
//!   narrower than Wilson's on the same counts: with a handful of errors a percentile
//!   bootstrap cannot reach past them (1 error in 880 attempts: its upper bound is
//!   about 3/880, the binomial one 5.6/880).
//! - **No subject structure**: Wilson's score interval
//!   (`faceauth_core::usecase::experiment::wilson`).
//!
//! The generator is a splitmix64 here rather than `rand`'s `StdRng`, whose stream
//! `rand` does not promise to keep between versions: the printed intervals stay
//! reproducible across dependency updates.

use std::collections::{BTreeMap, HashMap};

use faceauth_core::usecase::experiment::wilson;
use serde::Serialize;

/// Bootstrap resamples per interval.
pub const RESAMPLES: usize = 2000;
/// The bootstrap's fixed seed.
pub const SEED: u64 = 0x0fac_ea07_2021_0021;

/// How an interval was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Subjects resampled with replacement (widened to Wilson's where narrower).
    SubjectBootstrap,
    /// No error: `[0, 3/n]` or `[1 - 3/n, 1]`.
    RuleOfThree,
    /// Wilson's score interval (no subject structure).
    Wilson,
    /// Nothing to count: `[0, 1]`.
    NoAttempts,
}

/// A 95 % interval on a rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RateInterval {
    pub low: f64,
    pub high: f64,
    pub method: Method,
}

impl RateInterval {
    pub fn contains(&self, x: f64) -> bool {
        self.low - 1e-12 <= x && x <= self.high + 1e-12
    }
}

/// (hits, attempts) of each subject, in the subjects' order (a stable order, so the
/// bootstrap draws the same subjects on the same data).
pub fn by_subject<S: Ord>(items: impl IntoIterator<Item = (S, bool)>) -> Vec<(u64, u64)> {
    let mut counts: BTreeMap<S, (u64, u64)> = BTreeMap::new();
    for (subject, hit) in items {
        let c = counts.entry(subject).or_default();
        c.0 += u64::from(hit);
        c.1 += 1;
    }
    counts.into_values().collect()
}

/// The rule of three when there is no error either way (`k` = 0 or `k` = `n`).
pub fn rule_of_three(k: u64, n: u64) -> Option<RateInterval> {
    if n == 0 {
        return None;
    }
    let bound = (3.0 / n as f64).min(1.0);
    if k == 0 {
        Some(RateInterval { low: 0.0, high: bound, method: Method::RuleOfThree })
    } else if k == n {
        Some(RateInterval { low: 1.0 - bound, high: 1.0, method: Method::RuleOfThree })
    } else {
        None
    }
}

/// Wilson's interval on `k` of `n`.
pub fn wilson_interval(k: u64, n: u64) -> RateInterval {
    let w = wilson(k, n);
    RateInterval { low: w.low, high: w.high, method: Method::Wilson }
}

/// The interval of a rate with no subject structure: the rule of three at no error,
/// else Wilson's.
pub fn binomial(k: u64, n: u64) -> RateInterval {
    interval(&[(k, n)])
}

/// The interval of the rate sum(hits) / sum(attempts) over `subjects` ((hits,
/// attempts) per subject; one entry: no subject structure).
pub fn interval(subjects: &[(u64, u64)]) -> RateInterval {
    let (k, n) = subjects.iter().fold((0, 0), |(k, n), &(a, b)| (k + a, n + b));
    if n == 0 {
        return RateInterval { low: 0.0, high: 1.0, method: Method::NoAttempts };
    }
    if let Some(r) = rule_of_three(k, n) {
        return r;
    }
    let w = wilson_interval(k, n);
    match subject_bootstrap(subjects, RESAMPLES, SEED) {
        Some((low, high)) => {
            RateInterval { low: low.min(w.low), high: high.max(w.high), method: Method::SubjectBootstrap }
        }
        None => w,
    }
}

/// The interval of hits over attempts, each attempt with its subject.
pub fn of_subjects<S: Ord>(items: impl IntoIterator<Item = (S, bool)>) -> RateInterval {
    interval(&by_subject(items))
}

/// The percentile bootstrap of sum(hits) / sum(attempts), subjects resampled with
/// replacement; `None` with fewer than two subjects with attempts.
pub fn subject_bootstrap(subjects: &[(u64, u64)], resamples: usize, seed: u64) -> Option<(f64, f64)> {
    let subjects: Vec<(u64, u64)> = subjects.iter().copied().filter(|s| s.1 > 0).collect();
    if subjects.len() < 2 || resamples == 0 {
        return None;
    }
    let mut state = seed;
    let mut rates = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        let (mut k, mut n) = (0u64, 0u64);
        for _ in 0..subjects.len() {
            let (a, b) = subjects[below(&mut state, subjects.len())];
            k += a;
            n += b;
        }
        rates.push(k as f64 / n as f64);
    }
    Some(percentiles(&mut rates))
}

/// FAR over every pair of faces of different identities, at each of several
/// thresholds, identities resampled with replacement (a pair's two faces are of two
/// people, so both sides are resampled together: copies of one identity are not
/// paired with each other). `faces[i]`: the faces of identity `i`; `accepted`:
/// (i, j, bucket, pairs) with the pairs of identities i and j accepted at the
/// thresholds `0..bucket` (in ascending order of threshold). Returns the
/// bootstrap's (low, high) per threshold; `None` with fewer than two identities.
pub fn pair_bootstrap(
    faces: &[u64],
    accepted: &[(usize, usize, usize, u64)],
    thresholds: usize,
    resamples: usize,
    seed: u64,
) -> Option<Vec<(f64, f64)>> {
    if faces.iter().filter(|&&f| f > 0).count() < 2 || resamples == 0 {
        return None;
    }
    let mut state = seed;
    let mut rates: Vec<Vec<f64>> = vec![Vec::with_capacity(resamples); thresholds];
    let mut times = vec![0u64; faces.len()];
    let mut by_bucket = vec![0f64; thresholds + 1];
    for _ in 0..resamples {
        times.iter_mut().for_each(|m| *m = 0);
        for _ in 0..faces.len() {
            times[below(&mut state, faces.len())] += 1;
        }
        let (sum, squares) = faces.iter().zip(&times).fold((0f64, 0f64), |(s, q), (&f, &m)| {
            let x = (f * m) as f64;
            (s + x, q + (f * f * m * m) as f64)
        });
        let pairs = (sum * sum - squares) / 2.0;
        by_bucket.iter_mut().for_each(|b| *b = 0.0);
        for &(i, j, bucket, count) in accepted {
            by_bucket[bucket] += (times[i] * times[j] * count) as f64;
        }
        // Accepted at threshold t: the pairs of every bucket over t.
        let mut over = 0.0;
        for t in (0..thresholds).rev() {
            over += by_bucket[t + 1];
            rates[t].push(if pairs > 0.0 { over / pairs } else { 0.0 });
        }
    }
    Some(rates.iter_mut().map(|r| percentiles(r)).collect())
}

/// The interval of a FAR over cross-identity pairs: the rule of three at no
/// accepted pair, else the pair bootstrap widened to Wilson's.
pub fn pair_interval(accepted: u64, pairs: u64, bootstrap: Option<(f64, f64)>) -> RateInterval {
    if pairs == 0 {
        return RateInterval { low: 0.0, high: 1.0, method: Method::NoAttempts };
    }
    if let Some(r) = rule_of_three(accepted, pairs) {
        return r;
    }
    let w = wilson_interval(accepted, pairs);
    match bootstrap {
        Some((low, high)) => {
            RateInterval { low: low.min(w.low), high: high.max(w.high), method: Method::SubjectBootstrap }
        }
        None => w,
    }
}

/// Identity names to indices, in name order.
pub(crate) fn index_of(names: impl IntoIterator<Item = String>) -> HashMap<String, usize> {
    let mut sorted: Vec<String> = names.into_iter().collect();
    sorted.sort();
    sorted.dedup();
    sorted.into_iter().enumerate().map(|(i, n)| (n, i)).collect()
}

/// The 2.5th and 97.5th percentiles (linear between order statistics).
fn percentiles(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let pos = q * (values.len() - 1) as f64;
        let (i, frac) = (pos.floor() as usize, pos - pos.floor());
        let next = values[(i + 1).min(values.len() - 1)];
        values[i] + frac * (next - values[i])
    };
    (at(0.025), at(0.975))
}

/// splitmix64 (Steele, Lea and Flood, 2014).
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Uniform in `0..m` (multiply-shift: a bias under 2^-40 for the sizes here).
fn below(state: &mut u64, m: usize) -> usize {
    ((u128::from(splitmix64(state)) * m as u128) >> 64) as usize
}

/// Decimals that show an interval's width: one for a width of 1 to 10 points, two
/// under 1 point, ...
fn decimals(iv: &RateInterval) -> usize {
    let width = 100.0 * (iv.high - iv.low);
    if width > 0.0 { (1.0 - width.log10().floor()).clamp(1.0, 5.0) as usize } else { 1 }
}

/// `x %` with the interval's decimals.
pub fn percent(x: f64, iv: &RateInterval) -> String {
    format!("{:.*} %", decimals(iv), 100.0 * x)
}

/// `[low, high]` in percent.
pub fn bounds(iv: &RateInterval) -> String {
    let d = decimals(iv);
    format!("[{:.*}, {:.*}]", d, 100.0 * iv.low, d, 100.0 * iv.high)
}

/// `k/n = r % [low, high]`; `0/0 (n/a)` with no attempt.
pub fn count_text(k: u64, n: u64, iv: &RateInterval) -> String {
    if n == 0 {
        return "0/0 (n/a)".into();
    }
    format!("{k}/{n} = {} {}", percent(k as f64 / n as f64, iv), bounds(iv))
}

/// The rates' header line: how the intervals were made.
pub const LEGEND: &str = "[95 % intervals: subjects resampled (2000 bootstrap resamples, fixed seed, at least \
                          Wilson's width); Wilson without subjects; rule of three [0, 3/n] with no error]";

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-4
    }

    #[test]
    fn wilson_matches_the_textbook() {
        // Newcombe (1998), table I: 81/263 -> 0.2553-0.3662.
        let w = binomial(81, 263);
        assert_eq!(w.method, Method::Wilson);
        assert!(close(w.low, 0.2553) && close(w.high, 0.3662), "{w:?}");
        // One subject: no structure to resample, Wilson's.
        assert_eq!(interval(&[(81, 263)]), w);
    }

    #[test]
    fn rule_of_three_with_no_error() {
        let r = binomial(0, 212);
        assert_eq!(r.method, Method::RuleOfThree);
        assert_eq!((r.low, r.high), (0.0, 3.0 / 212.0));
        // All approved: the mirror image.
        let r = of_subjects((0..61).map(|i| (i % 9, true)));
        assert_eq!(r.method, Method::RuleOfThree);
        assert!(close(r.low, 1.0 - 3.0 / 61.0) && r.high == 1.0, "{r:?}");
        // Fewer than 3 attempts: the whole range.
        assert_eq!(binomial(0, 2).high, 1.0);
        assert_eq!(binomial(0, 0).method, Method::NoAttempts);
        assert!(count_text(0, 212, &binomial(0, 212)).ends_with("= 0.0 % [0.0, 1.4]"));
    }

    /// `subjects` people, each with `per` attempts, the first `bad` of them failing
    /// `fails` of theirs.
    fn clustered(subjects: usize, per: u64, bad: usize, fails: u64) -> Vec<(u64, u64)> {
        (0..subjects).map(|i| (if i < bad { fails } else { 0 }, per)).collect()
    }

    #[test]
    fn subject_bootstrap_contains_the_rate_and_narrows_with_more_subjects() {
        let small = clustered(20, 10, 4, 3); // 12/200
        let large = clustered(200, 10, 40, 3); // 120/2000
        let (s, l) = (interval(&small), interval(&large));
        assert_eq!((s.method, l.method), (Method::SubjectBootstrap, Method::SubjectBootstrap));
        assert!(s.contains(0.06) && l.contains(0.06), "{s:?} {l:?}");
        assert!(l.high - l.low < (s.high - s.low) / 2.0, "{s:?} {l:?}");
        // Errors clustered on a few people: wider than the binomial interval.
        let raw = subject_bootstrap(&large, RESAMPLES, SEED).expect("subjects");
        let w = binomial(120, 2000);
        assert!(raw.1 - raw.0 > w.high - w.low, "{raw:?} {w:?}");
        // The raw bootstrap also holds the rate, and the seed makes it reproducible.
        assert!(raw.0 < 0.06 && 0.06 < raw.1);
        assert_eq!(Some(raw), subject_bootstrap(&large, RESAMPLES, SEED));
        // Spread evenly (one error per person), the bootstrap is about the binomial.
        let even = clustered(120, 10, 60, 1); // 60/1200
        let raw = subject_bootstrap(&even, RESAMPLES, SEED).expect("subjects");
        let w = binomial(60, 1200);
        assert!((raw.1 - raw.0) < 1.2 * (w.high - w.low), "{raw:?} {w:?}");
    }

    #[test]
    fn a_single_error_is_not_narrower_than_wilson() {
        let subjects = clustered(400, 2, 1, 1); // 1/800
        let r = interval(&subjects);
        let w = binomial(1, 800);
        assert!(r.low <= w.low && r.high >= w.high && r.contains(1.0 / 800.0), "{r:?} {w:?}");
    }

    #[test]
    fn pair_bootstrap_holds_the_far() {
        // 30 identities of 3 faces; identity pairs (0, 1) and (2, 3) have 2 and 1 pairs
        // over the first threshold, (0, 1) one over the second.
        let faces = vec![3u64; 30];
        let accepted = [(0, 1, 1, 1), (0, 1, 2, 1), (2, 3, 1, 1)];
        let pairs = (90 * 90 - 30 * 9) / 2;
        let b = pair_bootstrap(&faces, &accepted, 2, RESAMPLES, SEED).expect("identities");
        let (far0, far1) = (3.0 / pairs as f64, 1.0 / pairs as f64);
        assert!(b[0].0 <= far0 && far0 <= b[0].1, "{b:?}");
        assert!(b[1].0 <= far1 && far1 <= b[1].1, "{b:?}");
        assert!(b[1].1 <= b[0].1);
        let iv = pair_interval(3, pairs, Some(b[0]));
        assert!(iv.contains(far0) && iv.high >= binomial(3, pairs).high);
        assert_eq!(pair_interval(0, pairs, Some((0.0, 0.0))).high, 3.0 / pairs as f64);
    }

    #[test]
    fn counts_print_with_their_interval() {
        let iv = RateInterval { low: 0.961, high: 0.983, method: Method::Wilson };
        assert_eq!(count_text(848, 871, &iv), "848/871 = 97.4 % [96.1, 98.3]");
        let iv = binomial(1, 880);
        assert_eq!(count_text(1, 880, &iv), "1/880 = 0.11 % [0.02, 0.64]");
        assert_eq!(count_text(0, 0, &iv), "0/0 (n/a)");
    }
}
