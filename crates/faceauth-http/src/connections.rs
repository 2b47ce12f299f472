//! Who holds the server's connections, and which one gives way when it is full.
//!
//! Every accepted connection is registered with its client (the peer address; an
//! IPv6 client by its /64) and an [`Activity`]: the bytes it has sent, when it last
//! sent any, and how many of its requests are being answered. A client at its own
//! cap, or a newcomer when the server is at its global cap, takes the place of the
//! connection that has sent least for longest and has no request being answered:
//! one client re-opening 600 half-sent requests kept `/health` refused 84 % of the
//! time when the newcomer was the one refused (issue 22).

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

/// The client a per-client cap counts: the peer's address, an IPv6 peer by its /64
/// (a host is given a whole /64, so one address each would be no cap at all; the
/// same key as the rate limit's).
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

/// What one connection has done, updated as it is read and served.
#[derive(Debug)]
pub(crate) struct Activity {
    epoch: Instant,
    /// Bytes received.
    bytes: AtomicU64,
    /// Milliseconds after `epoch` of the last read that brought bytes (at first, the accept).
    last_read_ms: AtomicU64,
    /// Requests of this connection being answered: such a connection is never evicted.
    in_flight: AtomicUsize,
}

impl Activity {
    fn new(epoch: Instant) -> Self {
        let activity =
            Self { epoch, bytes: AtomicU64::new(0), last_read_ms: AtomicU64::new(0), in_flight: AtomicUsize::new(0) };
        activity.touch(0);
        activity
    }

    fn touch(&self, bytes: usize) {
        self.bytes.fetch_add(bytes as u64, Relaxed);
        self.last_read_ms.store(self.epoch.elapsed().as_millis() as u64, Relaxed);
    }

    /// Marks a request as being answered until the guard is dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(self.clone())
    }

    /// Eviction order: the longest without a byte first, then the fewest bytes.
    fn idleness(&self) -> (u64, u64) {
        (self.last_read_ms.load(Relaxed), self.bytes.load(Relaxed))
    }
}

/// A request being answered (`Activity::begin`).
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// A stream whose reads are counted in an [`Activity`].
pub(crate) struct Counted<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Counted<S> {
    pub(crate) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before);
        if read > 0 {
            self.activity.touch(read);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Why a newcomer was refused: every connection that could give way has a request
/// being answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    /// The client holds its `max_per_client` connections.
    Client,
    /// The server holds `max_connections`.
    Server,
}

impl std::fmt::Display for Full {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Full::Client => "the client's connections are all being answered",
            Full::Server => "all connections are being answered",
        })
    }
}

/// The live connections.
#[derive(Debug)]
pub(crate) struct Registry {
    max_connections: usize,
    max_per_client: usize,
    epoch: Instant,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    live: HashMap<u64, Live>,
    per_client: HashMap<IpAddr, usize>,
}

#[derive(Debug)]
struct Live {
    /// The per-client key; `None` for a peer without a per-client cap.
    client: Option<IpAddr>,
    activity: Arc<Activity>,
    evict: Option<oneshot::Sender<()>>,
}

/// A registered connection: its slot is held until this is dropped, or until it is
/// evicted (`evicted` then resolves and the connection must be closed).
#[derive(Debug)]
pub(crate) struct Ticket {
    id: u64,
    registry: Arc<Registry>,
    activity: Arc<Activity>,
    evicted: oneshot::Receiver<()>,
    /// Whether another connection was evicted to make room for this one.
    pub(crate) displaced: Option<Full>,
}

impl Ticket {
    pub(crate) fn activity(&self) -> Arc<Activity> {
        self.activity.clone()
    }

    /// Resolves when this connection is evicted for a newcomer.
    pub(crate) async fn evicted(&mut self) {
        if (&mut self.evicted).await.is_err() {
            // The sender goes only with the registry entry, which this ticket removes.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.registry.inner().remove(self.id);
    }
}

impl Registry {
    pub(crate) fn new(max_connections: usize, max_per_client: usize) -> Arc<Self> {
        Arc::new(Self {
            max_connections: max_connections.max(1),
            max_per_client: max_per_client.max(1),
            epoch: Instant::now(),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a connection from `peer` (counted per client when `capped`); when
    /// the client or the server is full, the idlest connection that can go is
    /// evicted for it, and if none can, it is refused.
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr, capped: bool) -> Result<Ticket, Full> {
        let client = capped.then(|| client_key(peer));
        let mut inner = self.inner();
        let client_full = client.is_some_and(|c| inner.per_client.get(&c).copied().unwrap_or(0) >= self.max_per_client);
        let displaced = if client_full {
            let victim = inner.idlest(|live| live.client == client).ok_or(Full::Client)?;
            inner.evict(victim);
            Some(Full::Client)
        } else if inner.live.len() >= self.max_connections {
            let victim = inner.idlest(|_| true).ok_or(Full::Server)?;
            inner.evict(victim);
            Some(Full::Server)
        } else {
            None
        };
        let (evict, evicted) = oneshot::channel();
        let activity = Arc::new(Activity::new(self.epoch));
        let id = inner.next_id;
        inner.next_id += 1;
        inner.live.insert(id, Live { client, activity: activity.clone(), evict: Some(evict) });
        if let Some(c) = client {
            *inner.per_client.entry(c).or_default() += 1;
        }
        drop(inner);
        Ok(Ticket { id, registry: self.clone(), activity, evicted, displaced })
    }

    #[cfg(test)]
    fn open(&self) -> usize {
        self.inner().live.len()
    }
}

impl Inner {
    /// The connection among `which` with no request being answered that has gone
    /// longest without sending a byte (then: has sent the fewest).
    fn idlest(&self, which: impl Fn(&Live) -> bool) -> Option<u64> {
        self.live
            .iter()
            .filter(|(_, live)| which(live) && live.activity.in_flight.load(Relaxed) == 0)
            .min_by_key(|(id, live)| (live.activity.idleness(), **id))
            .map(|(id, _)| *id)
    }

    fn evict(&mut self, id: u64) {
        if let Some(evict) = self.remove(id).and_then(|mut live| live.evict.take()) {
            // The connection may have ended meanwhile: nothing to close then.
            let _ = evict.send(());
        }
    }

    fn remove(&mut self, id: u64) -> Option<Live> {
        let live = self.live.remove(&id)?;
        if let Some(c) = live.client
            && let Some(n) = self.per_client.get_mut(&c)
        {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&c);
            }
        }
        Some(live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa::1")), client_key(ip("2001:db8:1:2:bbbb::9")));
        assert_ne!(client_key(ip("2001:db8:1:2::1")), client_key(ip("2001:db8:1:3::1")));
        assert_eq!(client_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
    }

    #[tokio::test]
    async fn the_idlest_connection_gives_way_and_busy_ones_never_do() {
        let registry = Registry::new(3, 2);
        let mut first = registry.admit(ip("192.0.2.1"), true).expect("room");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let second = registry.admit(ip("192.0.2.2"), true).expect("room");
        let third = registry.admit(ip("192.0.2.3"), true).expect("room");
        second.activity().touch(100);
        // Full: the newcomer takes the place of the one that sent least for longest.
        let fourth = registry.admit(ip("192.0.2.4"), true).expect("evicts");
        assert_eq!(fourth.displaced, Some(Full::Server));
        tokio::time::timeout(std::time::Duration::from_secs(1), first.evicted()).await.expect("first evicted");
        drop(first);
        assert_eq!(registry.open(), 3);
        // Connections with a request being answered are never evicted.
        let busy: Vec<InFlight> = [&second, &third, &fourth].iter().map(|t| t.activity().begin()).collect();
        assert_eq!(registry.admit(ip("192.0.2.5"), true).expect_err("nothing can go"), Full::Server);
        drop(busy);
        // A client at its own cap displaces its own idlest connection, not another's.
        let registry = Registry::new(10, 2);
        let other = registry.admit(ip("192.0.2.9"), true).expect("room");
        let mut a1 = registry.admit(ip("192.0.2.1"), true).expect("room");
        let _a2 = registry.admit(ip("192.0.2.1"), true).expect("room");
        let a3 = registry.admit(ip("192.0.2.1"), true).expect("own idlest goes");
        assert_eq!(a3.displaced, Some(Full::Client));
        tokio::time::timeout(std::time::Duration::from_secs(1), a1.evicted()).await.expect("a1 evicted");
        assert_eq!(registry.open(), 3);
        // An uncapped peer (a trusted proxy) is held to the global cap only.
        let proxied: Vec<Ticket> =
            (0..7).map(|_| registry.admit(ip("192.0.2.1"), false).expect("no per-client cap")).collect();
        assert_eq!(registry.open(), 10);
        drop((other, proxied));
    }
}
