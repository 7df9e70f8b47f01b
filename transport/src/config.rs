//! Transport settings: flow-control windows sized for tensors, in-flight batches per peer,
//! keep-alive, idle and connect timeouts, reconnection backoff, and the frame limits.

use std::time::Duration;

use crate::frame::FrameLimits;

/// A setting that makes no sense; the message names it and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transport setting `{field}`: {reason}")]
pub struct ConfigError {
    /// The setting.
    pub field: &'static str,
    /// What is wrong and what to do.
    pub reason: String,
}

/// Reconnection backoff: the first retry after `first`, each next one twice as late up to
/// `max`, giving up once `give_up` has passed since the first failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry.
    pub first: Duration,
    /// Longest delay between retries.
    pub max: Duration,
    /// Total time after which a link stops retrying and reports the peer unreachable.
    pub give_up: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { first: Duration::from_millis(50), max: Duration::from_secs(2), give_up: Duration::from_secs(30) }
    }
}

impl Backoff {
    /// The delay before retry number `n` (0-based).
    pub fn delay(&self, n: u32) -> Duration {
        self.first.saturating_mul(1u32 << n.min(20)).min(self.max)
    }
}

/// How a node's QUIC connections behave. The defaults fit 16 MiB batches: one batch fits a
/// stream's window, and four batches in flight fit the connection's.
#[derive(Debug, Clone, PartialEq)]
pub struct TransportConfig {
    /// Bytes a peer may send on one stream before the receiver reads them (a batch frame
    /// larger than this still goes through, waiting on window updates).
    pub stream_window: u64,
    /// Bytes a peer may have unread across all streams of a connection.
    pub connection_window: u64,
    /// Bytes this node keeps unacknowledged per connection.
    pub send_window: u64,
    /// Batches in flight per peer: a receiver grants this many concurrent batch streams, and
    /// a link never has more outstanding, so a slow receiver slows its senders
    /// (backpressure) instead of buffering without bound.
    pub max_in_flight: u32,
    /// Control exchanges in flight per peer (bidirectional streams).
    pub max_control: u32,
    /// Keep-alive interval: an idle connection sends a ping this often.
    pub keep_alive: Duration,
    /// A connection with no traffic for this long is closed; this also bounds how long a
    /// send to a vanished peer can wait before it fails.
    pub idle_timeout: Duration,
    /// Longest wait for one connection attempt (handshake included).
    pub connect_timeout: Duration,
    /// Reconnection backoff of links.
    pub backoff: Backoff,
    /// Largest UDP payload that path MTU discovery probes for (1452 fits Ethernet, 8952 jumbo
    /// frames; loopback carries 65507 over IPv4). Discovery starts at 1200 and only keeps sizes
    /// the path carries; above 1500, segmentation offload is turned off (see `quinn()`).
    pub max_udp_payload: u16,
    /// Socket send and receive buffer size asked of the kernel. A process with CAP_NET_ADMIN
    /// gets it; others get at most `net.core.rmem_max` / `wmem_max` (raise them for
    /// multi-GB/s links: a small receive buffer drops datagrams, which QUIC then treats as
    /// congestion).
    pub socket_buffer: usize,
    /// Limits enforced on received frames.
    pub limits: FrameLimits,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            stream_window: 24 << 20,
            connection_window: 96 << 20,
            send_window: 96 << 20,
            max_in_flight: 4,
            max_control: 16,
            keep_alive: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            backoff: Backoff::default(),
            max_udp_payload: 1452,
            socket_buffer: 64 << 20,
            limits: FrameLimits::default(),
        }
    }
}

/// Largest value of a QUIC variable-length integer.
const VARINT_MAX: u64 = (1 << 62) - 1;

impl TransportConfig {
    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, reason: String| Err(ConfigError { field, reason });
        for (field, v) in [
            ("stream_window", self.stream_window),
            ("connection_window", self.connection_window),
            ("send_window", self.send_window),
        ] {
            if !(64 << 10..=VARINT_MAX).contains(&v) {
                return bad(field, format!("{v} bytes; use at least 64 KiB"));
            }
        }
        if self.connection_window < self.stream_window {
            return bad(
                "connection_window",
                format!(
                    "{} bytes is below stream_window ({}); the connection window covers every stream",
                    self.connection_window, self.stream_window
                ),
            );
        }
        if self.max_in_flight == 0 {
            return bad("max_in_flight", "0 would block every batch; use 1 or more".into());
        }
        if self.max_control == 0 {
            return bad("max_control", "0 would block every control message; use 1 or more".into());
        }
        if self.keep_alive.is_zero() || self.keep_alive >= self.idle_timeout {
            return bad(
                "keep_alive",
                format!(
                    "{:?} must be above zero and below idle_timeout ({:?}), or idle connections close",
                    self.keep_alive, self.idle_timeout
                ),
            );
        }
        if self.connect_timeout.is_zero() {
            return bad("connect_timeout", "must be above zero".into());
        }
        if self.backoff.first.is_zero() || self.backoff.max < self.backoff.first {
            return bad(
                "backoff",
                format!("first {:?} must be above zero and at most max {:?}", self.backoff.first, self.backoff.max),
            );
        }
        if !(1200..=65527).contains(&self.max_udp_payload) {
            return bad("max_udp_payload", format!("{} is outside 1200..=65527", self.max_udp_payload));
        }
        if self.limits.max_header < 1024 {
            return bad(
                "limits.max_header",
                format!("{} bytes is too small for a header; use at least 1 KiB", self.limits.max_header),
            );
        }
        Ok(())
    }

    /// The quinn transport configuration.
    pub(crate) fn quinn(&self) -> Result<quinn::TransportConfig, ConfigError> {
        self.validate()?;
        let var = |v: u64| quinn::VarInt::from_u64(v).unwrap_or(quinn::VarInt::MAX);
        let mut t = quinn::TransportConfig::default();
        t.stream_receive_window(var(self.stream_window))
            .receive_window(var(self.connection_window))
            .send_window(self.send_window)
            .max_concurrent_uni_streams(self.max_in_flight.into())
            .max_concurrent_bidi_streams(self.max_control.into())
            .keep_alive_interval(Some(self.keep_alive))
            .max_idle_timeout(Some(quinn::IdleTimeout::try_from(self.idle_timeout).map_err(|_| ConfigError {
                field: "idle_timeout",
                reason: format!("{:?} is too long for QUIC", self.idle_timeout),
            })?));
        // Segmentation offload batches several datagrams into one send of at most 64 KiB;
        // with datagrams above an Ethernet MTU the batch can exceed that and the kernel drops
        // it. Large datagrams need no offload: each one is already a big write.
        t.enable_segmentation_offload(self.max_udp_payload <= 1500);
        let mut mtu = quinn::MtuDiscoveryConfig::default();
        mtu.upper_bound(self.max_udp_payload);
        t.mtu_discovery_config(Some(mtu));
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_fit_16_mib_batches() {
        let c = TransportConfig::default();
        c.validate().unwrap();
        assert!(c.stream_window >= 16 << 20);
        assert!(c.connection_window >= c.max_in_flight as u64 * (16 << 20));
        c.quinn().unwrap();
    }

    #[test]
    fn bad_settings_name_the_field() {
        type Edit = Box<dyn Fn(&mut TransportConfig)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("stream_window", Box::new(|c| c.stream_window = 10)),
            ("connection_window", Box::new(|c| c.connection_window = c.stream_window - 1)),
            ("max_in_flight", Box::new(|c| c.max_in_flight = 0)),
            ("keep_alive", Box::new(|c| c.keep_alive = c.idle_timeout)),
            ("max_udp_payload", Box::new(|c| c.max_udp_payload = 100)),
            ("backoff", Box::new(|c| c.backoff.max = Duration::ZERO)),
        ];
        for (field, f) in cases {
            let mut c = TransportConfig::default();
            f(&mut c);
            let e = c.validate().unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b = Backoff::default();
        assert_eq!(b.delay(0), Duration::from_millis(50));
        assert_eq!(b.delay(1), Duration::from_millis(100));
        assert_eq!(b.delay(10), Duration::from_secs(2));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(2));
    }
}
