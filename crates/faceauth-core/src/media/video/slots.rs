//! The video decodes running per client: a client gets a few at once at most.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::super::MediaError;

/// The video decodes running per client (the client of a request is set by
/// `decode_for`). Cloned, it is the same table.
#[derive(Clone, Default)]
pub struct ClientDecodes(Arc<Mutex<HashMap<IpAddr, u32>>>);

impl std::fmt::Debug for ClientDecodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientDecodes")
    }
}

tokio::task_local! {
    /// The client the current request's decodes count against (set by the HTTP layer).
    pub(super) static DECODE_CLIENT: IpAddr;
}

/// Runs `work` (a request) with its video decodes counted against `client`. Outside
/// it (the CLI, tools) decodes are not counted per client.
pub async fn decode_for<F: std::future::Future>(client: IpAddr, work: F) -> F::Output {
    DECODE_CLIENT.scope(client, work).await
}

/// One running decode of a client; its place is given back when dropped.
pub(super) struct DecodeSlot {
    table: ClientDecodes,
    client: IpAddr,
}

impl ClientDecodes {
    /// A place for one more decode of `client`, or `ClientBusy` when it already has
    /// `limit` running (0: no limit).
    pub(super) fn take(&self, client: IpAddr, limit: u32) -> Result<DecodeSlot, MediaError> {
        let mut running = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = running.entry(client).or_insert(0);
        if limit > 0 && *count >= limit {
            return Err(MediaError::ClientBusy(limit));
        }
        *count += 1;
        Ok(DecodeSlot { table: self.clone(), client })
    }

    /// Clients with a decode running (tests).
    #[cfg(test)]
    fn clients(&self) -> usize {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }
}

impl Drop for DecodeSlot {
    fn drop(&mut self) {
        let mut running = self.table.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = running.get_mut(&self.client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                // Forgotten at zero: a scan from many addresses leaves nothing behind.
                running.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 22, item 6: at most `limit` decodes per client at once, others unaffected,
    /// places given back (and the client forgotten) when the decodes end.
    #[test]
    fn each_client_decodes_a_few_videos_at_once() {
        let table = ClientDecodes::default();
        let (a, b): (IpAddr, IpAddr) = ("198.51.100.7".parse().expect("ip"), "203.0.113.9".parse().expect("ip"));
        let first = table.take(a, 2).expect("first");
        let second = table.take(a, 2).expect("second");
        assert!(matches!(table.take(a, 2), Err(MediaError::ClientBusy(2))));
        let other = table.take(b, 2).expect("another client is not limited by the first");
        drop(first);
        let third = table.take(a, 2).expect("a place was given back");
        drop((second, third, other));
        assert_eq!(table.clients(), 0, "clients are forgotten at zero");
        // 0: no limit.
        let many: Vec<_> = (0..50).map(|_| table.take(a, 0).expect("unlimited")).collect();
        assert_eq!(many.len(), 50);
    }
}
