//! An ordered outbox: the batches for one peer wait here for one of its link's send slots
//! and streams ([`Link::open`]), and each stream that opens goes to the batch with the
//! smallest key (the frontend's key is the batch's reserved start on that worker), ties in
//! the order pushed. The peer takes streams in the order they open, so it receives the
//! batches in key order.
//!
//! Without it every batch would wait for a slot and a stream in a task of its own, and they
//! would go to whichever task ran first: on a busy runtime the newest task tends to, and a
//! batch could wait behind hundreds dispatched after it, long past the time it was planned
//! for (measured: batches reaching their worker up to 2 s late while later ones went
//! through).
//!
//! Dropping the [`Outbox`] sends what it holds and then ends its task; nothing pushed is lost
//! without its error being reported.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::endpoint::EndpointError;
use crate::frame::BatchHeader;
use crate::link::Link;

/// Called with a batch id and the reason when a batch from an outbox could not be sent.
pub type OnError = Arc<dyn Fn(u64, EndpointError) + Send + Sync>;

/// Batches for one peer, sent smallest key first as its link's slots free. Cheap to clone
/// (clones feed the same queue).
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Queued>,
    link: Link,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("peer", &self.link.peer()).finish()
    }
}

struct Queued {
    key: f64,
    seq: u64,
    header: BatchHeader,
    payloads: Vec<Bytes>,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    /// Reversed, so that the max-heap pops the smallest key (then the earliest pushed).
    fn cmp(&self, other: &Self) -> Ordering {
        other.key.total_cmp(&self.key).then(other.seq.cmp(&self.seq))
    }
}

impl Outbox {
    /// An outbox over `link`; `on_error` hears of every batch that could not be sent. Spawns
    /// its task on the current tokio runtime (call it from within one).
    pub fn spawn(link: Link, on_error: OnError) -> Outbox {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(link.clone(), rx, on_error));
        Outbox { tx, link }
    }

    /// The link the outbox sends on.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// Queues a batch under `key` (smaller goes first). A key that is not a number goes
    /// last. Returns the batch back when the outbox's task has ended (its runtime shut down).
    pub fn push(&self, key: f64, header: BatchHeader, payloads: Vec<Bytes>) -> Result<(), BatchHeader> {
        let key = if key.is_nan() { f64::INFINITY } else { key };
        self.tx.send(Queued { key, seq: 0, header, payloads }).map_err(|e| e.0.header)
    }
}

async fn run(link: Link, mut rx: mpsc::UnboundedReceiver<Queued>, on_error: OnError) {
    let mut heap = BinaryHeap::new();
    let mut seq = 0u64;
    let mut take = |heap: &mut BinaryHeap<Queued>, mut q: Queued| {
        q.seq = seq;
        seq += 1;
        heap.push(q);
    };
    loop {
        if heap.is_empty() {
            match rx.recv().await {
                Some(q) => take(&mut heap, q),
                // Every sender is gone and nothing is left to send.
                None => return,
            }
        }
        let opened = link.open().await;
        // What came while waiting for the stream competes for it too.
        while let Ok(q) = rx.try_recv() {
            take(&mut heap, q);
        }
        let Some(q) = heap.pop() else { continue };
        match opened {
            Ok(opened) => {
                let (link, on_error) = (link.clone(), on_error.clone());
                tokio::spawn(async move {
                    if let Err(e) = link.send_on(opened, &q.header, &q.payloads).await {
                        on_error(q.header.batch, e);
                    }
                });
            }
            Err(e) => {
                let reason = e.to_string();
                on_error(q.header.batch, EndpointError::Send { batch: q.header.batch, peer: link.peer(), reason });
            }
        }
    }
}
