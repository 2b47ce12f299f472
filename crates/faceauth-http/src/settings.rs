//! The server's settings (listening, limits, connections, admin access, background
//! tasks), as clap arguments that the binary composes with the core's.

use std::net::SocketAddr;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct ServerConfig {
    /// Address to listen on.
    #[arg(long, env = "FACEAUTH_LISTEN", default_value = "127.0.0.1:5000")]
    pub listen: SocketAddr,
    /// Token that admin endpoints (reset, policies, decisions, stats, replay, metrics) require as `Authorization: Bearer <token>`.
    /// Without one, admin endpoints answer loopback clients only.
    #[arg(long, env = "FACEAUTH_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// A reverse proxy whose `X-Forwarded-For` names the client (repeatable; none by
    /// default). Loopback-only admin endpoints then judge the forwarded client; a
    /// request with forwarding headers from any other peer is refused admin.
    #[arg(long = "trusted-proxy", env = "FACEAUTH_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Largest accepted upload, in bytes.
    #[arg(long, env = "FACEAUTH_MAX_UPLOAD_BYTES", default_value_t = 20 * 1024 * 1024,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1024..=1 << 30))]
    pub max_upload_bytes: usize,
    /// Days the audit log keeps each decision (0: forever).
    #[arg(long, env = "FACEAUTH_AUDIT_RETENTION_DAYS", default_value_t = 90,
          value_parser = clap::value_parser!(u64).range(0..=36_500))]
    pub audit_retention_days: u64,
    /// How often the policy directory is checked for changes, in milliseconds.
    #[arg(long, env = "FACEAUTH_POLICY_WATCH_MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub policy_watch_ms: u64,
    /// How often the duplicate-search index reads the other replicas' enrollments
    /// and erasures from the database, in milliseconds (an enrollment itself always
    /// searches every template committed: it catches up under the gallery lock).
    #[arg(long, env = "FACEAUTH_GALLERY_WATCH_MS", default_value_t = 250,
          value_parser = clap::value_parser!(u64).range(50..=60_000))]
    pub gallery_watch_ms: u64,
    /// Open client connections at most (keep it under the process's file-descriptor
    /// limit, which is raised to its hard limit at start-up). At the cap a new
    /// connection takes the place of the one that has sent least for longest and
    /// has no request being answered; it is refused only when every one has.
    #[arg(long, env = "FACEAUTH_MAX_CONNECTIONS", default_value_t = 512,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_connections: usize,
    /// Open connections per client address (an IPv6 client by its /64; a
    /// `--trusted-proxy` is not capped) at most; past it the client's own idlest
    /// connection is closed for the new one. 64: a browser opens at most 6 per
    /// server, so an office of ten behind one NAT address fits, while one client
    /// holds at most an eighth of the default 512.
    #[arg(long, env = "FACEAUTH_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 64,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_connections_per_client: usize,
    /// Seconds a client gets to send a request's headers, and the longest pause
    /// allowed within an upload; then the connection is closed (slow clients must not
    /// hold connections).
    #[arg(long, env = "FACEAUTH_HEADER_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub header_timeout: u64,
    /// Seconds a whole upload may take to arrive; then 408 UPLOAD_TIMEOUT.
    #[arg(long, env = "FACEAUTH_UPLOAD_TIMEOUT", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub upload_timeout: u64,
    /// Seconds in-flight requests get to finish after SIGTERM or Ctrl-C; then the
    /// server exits anyway (a stalled upload cannot hold it). A second signal exits at once.
    #[arg(long, env = "FACEAUTH_SHUTDOWN_GRACE", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_grace: u64,
    /// Requests per minute allowed per client address (the forwarded client behind a
    /// `--trusted-proxy`), then 429 RATE_LIMITED with `Retry-After`; `/health` and
    /// `/ready` are exempt. 0 (the default): no per-client limit (the worker queue's
    /// 503 still bounds the load).
    #[arg(long, env = "FACEAUTH_RATE_LIMIT", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub rate_limit: u32,
    /// Requests a client may send at once before `--rate-limit` paces it.
    #[arg(long, env = "FACEAUTH_RATE_LIMIT_BURST", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rate_limit_burst: u32,
}
