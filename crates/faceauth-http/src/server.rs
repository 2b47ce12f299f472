//! The accept loop (hyper-util, the connection registry of `connections`) and
//! `run`: the API served on a listener with the background tasks (policy watch,
//! audit retention) until shutdown.

use std::future::Future;
use std::sync::Arc;

use faceauth_core::usecase::FaceAuth;
use tokio::net::TcpListener;

use crate::ServerConfig;
use crate::connections;
use crate::error::RateLimitedWarning;

/// Serves the API on `listener` until `shutdown` resolves, then drains in-flight requests.
pub async fn run(
    listener: TcpListener,
    app: Arc<FaceAuth>,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let admin = crate::AdminAccess::from_token(config.admin_token.clone());
    match admin {
        crate::AdminAccess::Token(_) => tracing::info!(
            "admin endpoints (reset, policies, decisions, stats, replay, metrics) require the admin token"
        ),
        crate::AdminAccess::LoopbackOnly => {
            tracing::info!(
                "no admin token configured: admin endpoints (reset, policies, decisions, stats, replay, metrics) answer loopback clients only"
            )
        }
    }
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("listening on http://{addr}");
    }
    let watcher = app.watch_policies(std::time::Duration::from_millis(config.policy_watch_ms));
    let gallery_watcher = app.watch_enrolled_faces(std::time::Duration::from_millis(config.gallery_watch_ms));
    let retention = (config.audit_retention_days > 0).then(|| {
        let app = app.clone();
        let keep = std::time::Duration::from_secs(config.audit_retention_days * 24 * 3600);
        tokio::spawn(async move {
            let mut hourly = tokio::time::interval(std::time::Duration::from_secs(3600));
            loop {
                hourly.tick().await;
                match app.apply_retention(keep).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("audit log: {n} decisions past retention removed"),
                    Err(e) => tracing::warn!(error = %e, "audit log retention failed"),
                }
            }
        })
    });
    let http_limits = crate::HttpLimits {
        max_upload_bytes: config.max_upload_bytes,
        body_pause: std::time::Duration::from_secs(config.header_timeout),
        upload_timeout: std::time::Duration::from_secs(config.upload_timeout),
        trusted_proxies: config.trusted_proxies.clone().into(),
        rate_limit: std::num::NonZeroU32::new(config.rate_limit).map(|per_minute| crate::limits::RateLimit {
            per_minute,
            burst: std::num::NonZeroU32::new(config.rate_limit_burst).unwrap_or(std::num::NonZeroU32::MIN),
        }),
    };
    let router = crate::router_with_limits(app.clone(), http_limits, admin);
    let limits = ConnectionLimits {
        max_connections: config.max_connections,
        max_per_client: config.max_connections_per_client,
        uncapped: config.trusted_proxies.iter().map(|ip| ip.to_canonical()).collect(),
        header_timeout: std::time::Duration::from_secs(config.header_timeout),
    };
    let grace = std::time::Duration::from_secs(config.shutdown_grace);
    let served = serve(listener, router, limits, shutdown, grace).await;
    for task in watcher.into_iter().chain(retention).chain(Some(gallery_watcher)) {
        task.abort();
    }
    app.close().await;
    served
}

/// What client connections may hold.
#[derive(Debug, Clone)]
struct ConnectionLimits {
    /// Open connections at most. Below the process's file descriptors: 1100
    /// half-sent requests exhausted them (issue 11, defect 2). At the cap a newcomer
    /// takes the place of the connection that has sent least for longest.
    max_connections: usize,
    /// Open connections per client (peer address, IPv6 by /64) at most; past it the
    /// client's own idlest connection gives way.
    max_per_client: usize,
    /// Peers without a per-client cap: the trusted proxies, whose one address
    /// carries every client behind them.
    uncapped: Vec<std::net::IpAddr>,
    /// Time to send a request's headers (and, in the router, the longest pause
    /// within its body); a connection that takes longer is closed.
    header_timeout: std::time::Duration,
}

/// The accept loop: HTTP/1 and HTTP/2 through hyper-util, every connection with
/// its peer address, header read timeout and a slot in the connection registry
/// (`connections`: per-client and global caps, the idlest connection evicted for a
/// newcomer). On `shutdown` it stops accepting and drains, for at most `grace`.
async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: std::time::Duration,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use tower::ServiceExt;

    let mut builder = Builder::new(TokioExecutor::new());
    // hyper parses up to PARSED_HEADERS header lines so that the router answers past
    // MAX_HEADERS in JSON (hyper's own 431 beyond 100 had an empty body).
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_headers(crate::limits::PARSED_HEADERS);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let registry = connections::Registry::new(limits.max_connections, limits.max_per_client);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors (EMFILE) or a connection reset before it
                    // was accepted: pause so the loop does not spin, then go on.
                    ACCEPT_ERROR.warn(&e);
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let capped = !limits.uncapped.contains(&peer.ip().to_canonical());
        let mut ticket = match registry.admit(peer.ip(), capped) {
            Ok(ticket) => ticket,
            Err(full) => {
                // Every connection that could give way is being answered: the newcomer is
                // closed at once, so the requests being served keep their connections.
                FULL_WARNING.warn(&full);
                drop(stream);
                continue;
            }
        };
        match ticket.displaced {
            Some(connections::Full::Client) => CLIENT_EVICTION.warn(&format!("{} at most", limits.max_per_client)),
            Some(connections::Full::Server) => SERVER_EVICTION.warn(&format!("{} at most", limits.max_connections)),
            None => {}
        }
        let _ = stream.set_nodelay(true);
        let activity = ticket.activity();
        let stream = connections::Counted::new(stream, activity.clone());
        let router = router.clone();
        let service = tower::service_fn(move |mut request: axum::extract::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            // A connection with a request being answered is never evicted.
            let answering = activity.begin();
            let answer = router.clone().oneshot(request);
            async move {
                let response = answer.await;
                drop(answering);
                response
            }
        });
        let connection = builder
            .serve_connection_with_upgrades(
                TokioIo::new(stream),
                hyper_util::service::TowerToHyperService::new(service),
            )
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            tokio::select! {
                // A client that hangs up or times out ends its own connection; nothing to report.
                _ = connection => {}
                // Evicted for a newcomer: dropping the connection closes it.
                () = ticket.evicted() => {}
            }
            drop(ticket);
        });
    }
    drop(listener);
    // The drain is bounded: a client that stalls mid-upload would otherwise keep the
    // process alive forever after SIGTERM (issue 11, defect 3).
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still in flight {} s after the shutdown signal: exiting anyway", grace.as_secs());
    }
    Ok(())
}

/// Accept errors, at most one line a second.
static ACCEPT_ERROR: RateLimitedWarning = RateLimitedWarning::new("accept error");
/// Connections refused because none could give way, at most one line a second.
static FULL_WARNING: RateLimitedWarning = RateLimitedWarning::new("connection limit reached: new connections closed");
/// Idle connections closed for newcomers, at most one line a second per cap.
static CLIENT_EVICTION: RateLimitedWarning = RateLimitedWarning::new(
    "per-client connection limit reached: the client's idlest connections closed for its new ones",
);
static SERVER_EVICTION: RateLimitedWarning = RateLimitedWarning::new(
    "connection limit reached: the connections that sent least for longest closed for new ones",
);
