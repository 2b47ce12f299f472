//! `faceauth policy test`: a policy component run over evidence fixtures with the
//! outcomes its author expects (`faceauth_core::usecase::fixtures`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use faceauth_core::policy::{Param, PolicyLimits, PolicyRuntime};
use faceauth_core::usecase::fixtures::{Fixture, parse_fixtures, run_fixtures};

use crate::config::{PolicyCommand, PolicyTestArgs};

/// Runs a policy command; `false` when a fixture's outcome differs from its expectation.
pub fn policy(command: PolicyCommand) -> anyhow::Result<bool> {
    match command {
        PolicyCommand::Test(args) => test(args),
    }
}

fn test(args: PolicyTestArgs) -> anyhow::Result<bool> {
    let mut fixtures: Vec<Fixture> = Vec::new();
    for file in fixture_files(&args.fixtures)? {
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        fixtures.extend(parse_fixtures(&text, &file.display().to_string()).map_err(anyhow::Error::msg)?);
    }
    anyhow::ensure!(!fixtures.is_empty(), "no fixture found in {:?}", args.fixtures);
    let overrides: Vec<Param> =
        args.params.iter().map(|(name, value)| Param { name: name.clone(), value: *value }).collect();
    let compiled = PolicyRuntime::new(PolicyLimits::default())?
        .compile_file(&args.policy)
        .with_context(|| format!("loading {}", args.policy.display()))?;
    let results = run_fixtures(&compiled, &overrides, &fixtures);
    let failed = results.iter().filter(|r| r.failure.is_some()).count();
    for result in &results {
        match &result.failure {
            None => println!("ok    {}", result.name),
            Some(why) => println!("FAIL  {}: {why}", result.name),
        }
    }
    let info = compiled.info();
    println!(
        "{}@{}: {} passed, {failed} failed, of {} fixtures",
        info.name,
        info.version,
        results.len() - failed,
        results.len()
    );
    Ok(failed == 0)
}

/// The `.json` files named, and those directly inside the directories named, in
/// name order.
fn fixture_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading {}", path.display()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "json") && p.is_file())
                .collect();
            inside.sort();
            files.extend(inside);
        } else {
            anyhow::ensure!(Path::new(path).is_file(), "{}: no such fixture file", path.display());
            files.push(path.clone());
        }
    }
    Ok(files)
}
