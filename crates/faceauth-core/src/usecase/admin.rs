//! The admin use cases: the audit log read back (decisions, statistics), backtests
//! (replay), the policy variants (list, reload, put, retire) and reset. The HTTP
//! admin endpoints and the CLI call these; neither reaches the store or the
//! `PolicyRouter` itself.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use super::FaceAuth;
use super::experiment::{self, ExperimentReport};
use super::replay::{self, ReplayReport, Truth};
use super::stats::{SCORE_BINS, VariantStats, variant_stats};
use crate::policy::router::{PolicySet, RouterError, VariantChange};
use crate::policy::{Endpoint, LoadedPolicy, Param, PolicyError};
use crate::store::audit::{AuditLog, Cursor, DecisionFilter, DecisionPage};
use crate::store::{Erased, StoreError, now_ms};

/// Why an admin use case failed. `http::admin` maps each to a status, once.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The request itself is wrong (a field, a parameter, a label file).
    #[error("{0}")]
    BadRequest(String),
    #[error("the upload exceeds the size limit")]
    TooLarge,
    #[error(transparent)]
    Router(#[from] RouterError),
    #[error("policy: {0}")]
    Policy(#[from] PolicyError),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("admin task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// An analysis on the admin's behalf (the search) failed, with its reason code.
    #[error(transparent)]
    UseCase(#[from] super::UseCaseError),
}

/// Which recorded decisions to list.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct DecisionQuery {
    pub since_ms: Option<i64>,
    pub endpoint: Option<Endpoint>,
    pub variant: Option<String>,
    pub shadow: Option<bool>,
    /// Only this request's decisions (its answer and its shadows).
    pub request_id: Option<String>,
    /// The page after the one that answered this `next` (`<at_ms>-<id>`): paging
    /// goes on past any limit.
    pub before: Option<String>,
    /// Newest this many (default 100, at most 10 000).
    pub limit: Option<i64>,
    /// Leave the evidence out (a video's is some 15 KB).
    #[serde(skip)]
    pub without_evidence: bool,
}

/// Per-variant statistics over a window of the audit log.
#[derive(Debug, Clone, Serialize)]
pub struct StatsReport {
    pub since_ms: i64,
    pub decisions: usize,
    pub score_bins: usize,
    pub variants: Vec<VariantStats>,
    /// The A/B comparison: per endpoint, intervals, lift, always-valid test,
    /// sample ratio and shadows.
    pub experiment: ExperimentReport,
}

/// The absolute difference in approval rate an experiment is planned for when the
/// request does not say: 2 points.
pub const DEFAULT_MIN_EFFECT: f64 = 0.02;

/// What `/ready` reports.
pub struct Readiness {
    pub database: Result<(), StoreError>,
    pub answering_variants: usize,
    pub embedding_model: String,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.database.is_ok() && self.answering_variants > 0
    }
}

/// The policy set in force and how it is managed.
pub struct PolicyOverview {
    pub managed: bool,
    pub directory: Option<PathBuf>,
    pub last_error: Option<String>,
    pub set: Arc<PolicySet>,
}

/// An admin change of the policy set.
pub enum PolicyChange {
    /// Rebuild the set from the policy directory.
    Reload,
    /// Add or change a variant; `None` keeps the current value.
    Put {
        name: String,
        component: Option<Vec<u8>>,
        weight: Option<u32>,
        shadow: Option<bool>,
        params: Option<BTreeMap<String, f64>>,
        retire_after_failures: Option<u32>,
    },
    Retire(String),
}

/// Which policy a backtest runs: new component bytes, or an existing variant's
/// component and parameters; `params` override on top.
#[derive(Debug, Default)]
pub struct Candidate {
    pub component: Option<Vec<u8>>,
    pub variant: Option<String>,
    pub params: Vec<Param>,
}

/// Which recorded answers a backtest replays, and their ground truth.
#[derive(Debug, Clone)]
pub struct ReplayScope {
    pub since_ms: Option<i64>,
    pub limit: i64,
    pub labels: HashMap<String, Truth>,
}

impl Default for ReplayScope {
    fn default() -> Self {
        Self { since_ms: None, limit: 10_000, labels: HashMap::new() }
    }
}

/// Replays `candidate` over the recorded answers in `scope`: the one backtest,
/// for `POST /api/admin/replay` and `faceauth replay`.
pub async fn backtest(
    audit: &AuditLog,
    candidate: LoadedPolicy,
    scope: ReplayScope,
) -> Result<ReplayReport, AdminError> {
    let filter = DecisionFilter {
        since_ms: scope.since_ms,
        shadow: Some(false),
        limit: Some(scope.limit.clamp(1, 1_000_000)),
        ..Default::default()
    };
    let records = audit.decisions(&filter).await?;
    // Policy calls run in the thread that replays: keep them off the async workers.
    Ok(tokio::task::spawn_blocking(move || replay::replay(&candidate, &records, &scope.labels)).await?)
}

impl FaceAuth {
    /// Recorded decisions, the newest `limit` in time order, and where the next
    /// (older) page starts.
    pub async fn decisions(&self, q: DecisionQuery) -> Result<DecisionPage, AdminError> {
        let before = match q.before.as_deref() {
            Some(cursor) => Some(cursor.parse::<Cursor>().map_err(|e| AdminError::BadRequest(e.to_string()))?),
            None => None,
        };
        let filter = DecisionFilter {
            since_ms: q.since_ms,
            endpoint: q.endpoint,
            variant: q.variant,
            shadow: q.shadow,
            request_id: q.request_id,
            before,
            limit: Some(q.limit.unwrap_or(100).clamp(1, 10_000)),
            without_evidence: q.without_evidence,
        };
        Ok(self.audit.decisions_page(&filter).await?)
    }

    /// Per-variant statistics since `since_ms` (default: the last 24 hours), over at
    /// most the last 100 000 decisions.
    pub async fn stats(
        &self,
        since_ms: Option<i64>,
        endpoint: Option<Endpoint>,
        min_effect: Option<f64>,
    ) -> Result<StatsReport, AdminError> {
        let min_effect = min_effect.unwrap_or(DEFAULT_MIN_EFFECT);
        if !(min_effect > 0.0 && min_effect < 1.0) {
            return Err(AdminError::BadRequest("min_effect must be between 0 and 1 (exclusive)".into()));
        }
        let since_ms = since_ms.unwrap_or_else(|| now_ms() - 24 * 3600 * 1000);
        let filter = DecisionFilter {
            since_ms: Some(since_ms),
            endpoint,
            limit: Some(100_000),
            without_evidence: true,
            ..Default::default()
        };
        let mut records = self.audit.decisions(&filter).await?;
        // Time order, for the always-valid test's running maximum.
        records.sort_by_key(|r| r.at_ms);
        let weights: Vec<(String, u32)> = self
            .engine
            .router()
            .current()
            .variants
            .iter()
            .filter(|v| !v.shadow)
            .map(|v| (v.name.clone(), v.weight))
            .collect();
        Ok(StatsReport {
            since_ms,
            decisions: records.len(),
            score_bins: SCORE_BINS,
            variants: variant_stats(&records),
            experiment: experiment::report(&records, &weights, min_effect),
        })
    }

    /// Backtests a candidate built from the running variants (see [`backtest`]).
    pub async fn replay(&self, candidate: Candidate, scope: ReplayScope) -> Result<ReplayReport, AdminError> {
        let router = self.engine.router().clone();
        // Compiling a component is blocking work.
        let policy = tokio::task::spawn_blocking(move || {
            router.candidate(candidate.component.as_deref(), candidate.variant.as_deref(), &candidate.params)
        })
        .await??;
        backtest(&self.audit, policy, scope).await
    }

    pub fn policies(&self) -> PolicyOverview {
        let router = self.engine.router();
        PolicyOverview {
            managed: router.directory().is_some(),
            directory: router.directory().map(|d| d.to_path_buf()),
            last_error: router.last_error(),
            set: router.current(),
        }
    }

    /// Applies `change` (validated whole before the swap) and returns the new set.
    pub async fn change_policies(&self, change: PolicyChange) -> Result<Arc<PolicySet>, AdminError> {
        let router = self.engine.router().clone();
        // Compiling and self-checking components is blocking work.
        let set = tokio::task::spawn_blocking(move || match change {
            PolicyChange::Reload => router.reload(),
            PolicyChange::Retire(name) => router.retire(&name),
            PolicyChange::Put { name, component, weight, shadow, params, retire_after_failures } => router.put_variant(
                &name,
                VariantChange { component: component.as_deref(), weight, shadow, params, retire_after_failures },
            ),
        })
        .await??;
        Ok(set)
    }

    /// Whether the service can serve now: the database answers and a policy
    /// variant can decide (the models are loaded before the server listens).
    pub async fn readiness(&self) -> Readiness {
        let set = self.engine.router().current();
        Readiness {
            database: self.database_ready().await,
            answering_variants: set.variants.iter().filter(|v| !v.shadow && v.weight > 0).count(),
            embedding_model: self.engine.models().embedding_model_version.clone(),
        }
    }

    /// How many users are enrolled.
    pub async fn enrolled_users(&self) -> Result<i64, AdminError> {
        Ok(self.store.count().await?)
    }

    /// Erases every user: templates deleted, audit rows pseudonymised.
    pub async fn reset(&self) -> Result<Erased, AdminError> {
        let erased = self.store.reset().await?;
        self.forget_erased().await;
        Ok(erased)
    }

    /// Erased templates leave this replica's duplicate-search index at once (the
    /// others' at their next poll).
    async fn forget_erased(&self) {
        if let Err(e) = self.faces.catch_up(&self.store).await {
            tracing::warn!(error = %e, "the duplicate-search index did not take the erasure at once (next poll)");
        }
    }

    /// Erases one user (right to erasure): the template is deleted and the user's
    /// audit rows keep only a keyed pseudonym of the name. `Ok(None)` when the name
    /// has neither a template nor audit rows.
    pub async fn erase_user(&self, username: &str) -> Result<Option<Erased>, AdminError> {
        let username = super::validate_username(username).map_err(|e| AdminError::BadRequest(e.to_string()))?;
        let erased = self.store.erase(&username).await?;
        self.forget_erased().await;
        Ok((erased.users + erased.decisions > 0).then_some(erased))
    }
}
