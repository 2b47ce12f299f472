//! Load time, memory and one-thread search latency of a `Gallery`, and the int8
//! similarity error against f32.
//!
//! ```text
//! cargo run --release -p faceauth-gallery --example gallery_bench -- --templates 1000000
//! cargo run --release -p faceauth-gallery --example gallery_bench -- --templates 100000
//! ```
//!
//! Options: `--templates N` (100000), `--queries N` (200), `--k N` (10), `--seed N`
//! (20), `--check N` queries compared with an f32 brute-force search (10),
//! `--error-pairs N` pairs for the similarity error (200000), `--real-embeddings
//! PATH` a `pipeline_reference.json` whose real embeddings are added to the error
//! measurement (default `../shared/reference/pipeline_reference.json` when present).
//!
//! Templates are random unit vectors with Gaussian components: the model's
//! embeddings have the same statistics (kurtosis ≈ 3, largest |component| 0.12-0.18
//! on the 7 reference faces). Keys are 36 bytes, the length of a UUID. Half the
//! queries are an enrolled user's template moved to cosine 0.6 (a genuine probe),
//! half are random (nobody enrolled).

use std::error::Error;
use std::time::{Duration, Instant};

use faceauth_gallery::{DIMENSIONS, Gallery};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

struct Options {
    templates: usize,
    queries: usize,
    k: usize,
    seed: u64,
    check: usize,
    error_pairs: usize,
    real_embeddings: Option<std::path::PathBuf>,
}

fn options() -> Result<Options, Box<dyn Error>> {
    let mut options = Options {
        templates: 100_000,
        queries: 200,
        k: 10,
        seed: 20,
        check: 10,
        error_pairs: 200_000,
        real_embeddings: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--templates" => options.templates = value.parse()?,
            "--queries" => options.queries = value.parse()?,
            "--k" => options.k = value.parse()?,
            "--seed" => options.seed = value.parse()?,
            "--check" => options.check = value.parse()?,
            "--error-pairs" => options.error_pairs = value.parse()?,
            "--real-embeddings" => options.real_embeddings = Some(value.into()),
            _ => return Err(format!("unknown option {flag}").into()),
        }
    }
    if options.real_embeddings.is_none() {
        let default =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/pipeline_reference.json");
        options.real_embeddings = default.exists().then_some(default);
    }
    Ok(options)
}

fn gaussian_unit(rng: &mut SmallRng, out: &mut [f32]) {
    for pair in out.chunks_mut(2) {
        let u: f64 = rng.random_range(f64::EPSILON..1.0);
        let t: f64 = rng.random();
        let (r, angle) = ((-2.0 * u.ln()).sqrt(), std::f64::consts::TAU * t);
        pair[0] = (r * angle.cos()) as f32;
        if let Some(second) = pair.get_mut(1) {
            *second = (r * angle.sin()) as f32;
        }
    }
    normalise(out);
}

fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt() as f32;
    v.iter_mut().for_each(|x| *x /= norm);
}

/// A unit vector whose cosine with unit `base` is about `cosine`.
fn near(rng: &mut SmallRng, base: &[f32], cosine: f32) -> Vec<f32> {
    let mut noise = vec![0.0; DIMENSIONS];
    gaussian_unit(rng, &mut noise);
    let spread = (1.0 - cosine * cosine).sqrt();
    let mut v: Vec<f32> = base.iter().zip(&noise).map(|(b, n)| cosine * b + spread * n).collect();
    normalise(&mut v);
    v
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn key(i: usize) -> String {
    format!("user-{i:031}")
}

fn rss_kib() -> Result<u64, Box<dyn Error>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or("no VmRSS in /proc/self/status")?;
    Ok(line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim().parse()?)
}

/// This thread's time on a CPU, in ns (`/proc/thread-self/schedstat`), 0 where absent.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|ns| ns.parse().ok()))
        .unwrap_or(0)
}

fn smaps_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/smaps_rollup")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l[field.len()..].trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len().saturating_sub(1)) as f64 * p / 100.0).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() -> Result<(), Box<dyn Error>> {
    let options = options()?;
    let n = options.templates;
    println!(
        "gallery_bench: {n} templates of {DIMENSIONS} dims, {} queries, k = {}, seed {}",
        options.queries, options.k, options.seed
    );
    println!(
        "machine: {} cores, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    println!(
        "simsimd kernels: dynamic dispatch {}, haswell {}, skylake {}, ice {}, genoa {}, sapphire {}, turin {}",
        simsimd::capabilities::uses_dynamic_dispatch(),
        simsimd::capabilities::uses_haswell(),
        simsimd::capabilities::uses_skylake(),
        simsimd::capabilities::uses_ice(),
        simsimd::capabilities::uses_genoa(),
        simsimd::capabilities::uses_sapphire(),
        simsimd::capabilities::uses_turin(),
    );

    let mut rng = SmallRng::seed_from_u64(options.seed);
    let started = Instant::now();
    let mut templates = vec![0.0f32; n * DIMENSIONS];
    for template in templates.chunks_exact_mut(DIMENSIONS) {
        gaussian_unit(&mut rng, template);
    }
    println!("generated {n} f32 templates in {:.1} s (not part of the load)", started.elapsed().as_secs_f64());

    let rss_before = rss_kib()?;
    let started = Instant::now();
    let gallery = Gallery::try_from_iter(templates.chunks_exact(DIMENSIONS).enumerate().map(|(i, t)| (key(i), t)))?;
    let load = started.elapsed();
    let rss_after = rss_kib()?;
    println!(
        "load: {n} templates (validate, quantise, 36-byte keys) in {:.2} s ({:.2} µs each)",
        load.as_secs_f64(),
        load.as_secs_f64() * 1e6 / n.max(1) as f64
    );
    println!(
        "memory per template: {:.0} B by RSS ({} KiB -> {} KiB), {:.0} B by Gallery::memory_bytes ({:.1} MiB in all)",
        (rss_after.saturating_sub(rss_before) * 1024) as f64 / n.max(1) as f64,
        rss_before,
        rss_after,
        gallery.memory_bytes() as f64 / n.max(1) as f64,
        gallery.memory_bytes() as f64 / (1024.0 * 1024.0),
    );
    println!("transparent huge pages in the process: {} MiB", smaps_kib("AnonHugePages:") / 1024);

    // Queries: even ones genuine (an enrolled user at cosine 0.6), odd ones random.
    let mut queries = Vec::with_capacity(options.queries);
    for q in 0..options.queries {
        if q % 2 == 0 && n > 0 {
            let user = rng.random_range(0..n);
            queries.push((Some(user), near(&mut rng, &templates[user * DIMENSIONS..(user + 1) * DIMENSIONS], 0.6)));
        } else {
            let mut query = vec![0.0; DIMENSIONS];
            gaussian_unit(&mut rng, &mut query);
            queries.push((None, query));
        }
    }
    for (_, query) in queries.iter().take(3) {
        gallery.search(query, options.k, None)?; // warm-up
    }
    let mut latencies = Vec::with_capacity(queries.len());
    let cpu_started = thread_cpu_ns();
    let mut found_genuine = 0;
    let mut genuine = 0;
    for (user, query) in &queries {
        let started = Instant::now();
        let matches = gallery.search(query, options.k, None)?;
        latencies.push(started.elapsed());
        if let Some(user) = user {
            genuine += 1;
            if matches.first().is_some_and(|m| m.user == key(*user)) {
                found_genuine += 1;
            }
        }
    }
    let cpu_time = Duration::from_nanos(thread_cpu_ns().saturating_sub(cpu_started));
    latencies.sort();
    let mean = latencies.iter().sum::<Duration>() / latencies.len().max(1) as u32;
    println!(
        "search (one thread, k = {}): p50 {:.2} ms, p99 {:.2} ms, mean {:.2} ms, max {:.2} ms; genuine probe ranked first {found_genuine}/{genuine}",
        options.k,
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(mean),
        ms(latencies.last().copied().unwrap_or_default()),
    );
    println!(
        "search on-CPU time (schedstat; leaves out time spent waiting for a core): mean {:.2} ms",
        ms(cpu_time / latencies.len().max(1) as u32),
    );

    // Top-k against an f32 brute-force search.
    let mut same_sets = 0;
    let mut overlap = 0;
    let mut worst_gap = 0.0f32;
    let mut worst_error = 0.0f32;
    let checked = options.check.min(queries.len());
    for (_, query) in queries.iter().take(checked) {
        let matches = gallery.search(query, options.k, None)?;
        let mut exact: Vec<(f32, usize)> =
            templates.chunks_exact(DIMENSIONS).map(|t| cosine(t, query)).zip(0..).collect();
        let k = options.k.min(exact.len());
        if k > 0 {
            exact.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
        }
        let mut exact_users: Vec<String> = exact[..k].iter().map(|(_, i)| key(*i)).collect();
        let mut found_users: Vec<String> = matches.iter().map(|m| m.user.clone()).collect();
        exact_users.sort();
        found_users.sort();
        same_sets += usize::from(exact_users == found_users);
        overlap += found_users.iter().filter(|u| exact_users.contains(u)).count();
        let kth = exact[..k].iter().map(|(c, _)| *c).fold(f32::INFINITY, f32::min);
        for m in &matches {
            let i: usize = m.user.trim_start_matches("user-").parse()?;
            let truth = cosine(&templates[i * DIMENSIONS..(i + 1) * DIMENSIONS], query);
            worst_error = worst_error.max((m.similarity - truth).abs());
            worst_gap = worst_gap.max(kth - truth);
        }
    }
    println!(
        "against f32 brute force ({checked} queries): same top-{k} set {same_sets}/{checked}, recall {:.3}; a returned match is at worst {worst_gap:.4} below the f32 k-th (near-ties swapped); worst similarity error {worst_error:.4}",
        overlap as f64 / (checked * options.k.min(n)).max(1) as f64,
        k = options.k
    );
    println!("load average at the end: {}", load_average());
    drop(gallery);
    drop(templates);

    similarity_error(&options, &mut rng)
}

/// Similarity error of the int8 codes against f32 cosine near the thresholds.
fn similarity_error(options: &Options, rng: &mut SmallRng) -> Result<(), Box<dyn Error>> {
    let mut errors = Vec::with_capacity(options.error_pairs);
    let mut probe = Gallery::new();
    let mut enrolled = vec![0.0f32; DIMENSIONS];
    for i in 0..options.error_pairs {
        gaussian_unit(rng, &mut enrolled);
        let target = 0.30 + 0.50 * i as f32 / options.error_pairs as f32;
        let query = near(rng, &enrolled, target);
        probe.insert("u", &enrolled)?;
        let quantised = probe.similarity("u", &query)?.ok_or("enrolled user missing")?;
        errors.push((quantised - cosine(&enrolled, &query)).abs());
    }
    report_errors(&format!("{} Gaussian pairs at cosine 0.30..0.80", options.error_pairs), &mut errors);

    if let Some(path) = &options.real_embeddings {
        let reference: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)?;
        let mut real: Vec<Vec<f32>> = Vec::new();
        for image in reference["images"].as_array().ok_or("no images")? {
            for face in image["faces"].as_array().ok_or("no faces")? {
                real.push(serde_json::from_value(face["embedding"].clone())?);
            }
        }
        let mut errors = Vec::new();
        let mut cosines = Vec::new();
        for (i, a) in real.iter().enumerate() {
            probe.insert("u", a)?;
            for b in &real[i + 1..] {
                let exact = cosine(a, b) / (cosine(a, a) * cosine(b, b)).sqrt();
                errors.push((probe.similarity("u", b)?.ok_or("enrolled user missing")? - exact).abs());
                cosines.push(exact);
            }
        }
        let band = cosines.iter().filter(|c| (0.35..=0.8).contains(*c)).count();
        report_errors(
            &format!(
                "{} pairs of {} real embeddings ({band} at cosine 0.35..0.80) from {}",
                errors.len(),
                real.len(),
                path.display()
            ),
            &mut errors,
        );
    }
    Ok(())
}

fn report_errors(what: &str, errors: &mut [f32]) {
    errors.sort_by(f32::total_cmp);
    let at =
        |p: f64| errors.get(((errors.len().saturating_sub(1)) as f64 * p).round() as usize).copied().unwrap_or(0.0);
    let mean = errors.iter().map(|e| f64::from(*e)).sum::<f64>() / errors.len().max(1) as f64;
    println!(
        "int8 similarity error vs f32, {what}: mean {mean:.5}, p99 {:.5}, p99.9 {:.5}, max {:.5}",
        at(0.99),
        at(0.999),
        errors.last().copied().unwrap_or(0.0)
    );
}
