//! `poolpipe bench transport`: options from the command line, the run with a progress bar,
//! and the table (the measurement itself is `poolpipe_transport::bench`).

use anyhow::{Context, Result};
use poolpipe_transport::bench::{BenchOptions, BenchReport, run};

/// Parses a size such as `65536`, `64K`, `64KiB`, `1M`, `16MiB` (binary units).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: usize = num.parse().map_err(|_| format!("'{s}' is not a size (e.g. 65536, 64K, 1M, 16MiB)"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        other => return Err(format!("'{s}': unknown unit '{other}' (use K or M, binary)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("'{s}' is too large"))
}

/// Runs the benchmark on a fresh tokio runtime, with a progress bar unless `quiet`.
pub fn bench(opts: &BenchOptions, quiet: bool) -> Result<BenchReport> {
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the tokio runtime")?;
    let steps = poolpipe_transport::bench::steps(opts);
    let pb = if quiet { indicatif::ProgressBar::hidden() } else { crate::progress(steps, "transport") };
    let started = std::sync::atomic::AtomicBool::new(false);
    let step = |what: &str| {
        if started.swap(true, std::sync::atomic::Ordering::Relaxed) {
            pb.inc(1);
        }
        pb.set_message(what.to_string());
    };
    let report = rt.block_on(run(opts, &step, poolpipe_dataplane::stats::percentile)).context("transport benchmark")?;
    pb.finish_and_clear();
    Ok(report)
}

fn human(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    }
}

/// The report as a table for people.
pub fn render(r: &BenchReport) -> String {
    let mut s = format!(
        "transport on loopback: QUIC (path MTU {} of at most {}, stream window {} MiB, {} in flight) vs TLS 1.3 over TCP vs TCP\n\n",
        r.quic_path_mtu,
        r.max_udp_payload,
        r.stream_window >> 20,
        r.max_in_flight
    );
    s += &format!(
        "{:>8} {:>6} {:>10} {:>10} {:>10} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
        "tensor",
        "msgs",
        "QUIC MB/s",
        "TLS MB/s",
        "TCP MB/s",
        "ratio",
        "QUIC p50",
        "QUIC p99",
        "TLS p50",
        "TLS p99",
        "TCP p50",
        "TCP p99"
    );
    for z in &r.sizes {
        s += &format!(
            "{:>8} {:>6} {:>10.0} {:>10.0} {:>10.0} {:>6.2} {:>8.0}us {:>8.0}us {:>8.0}us {:>8.0}us {:>8.0}us {:>8.0}us\n",
            human(z.bytes),
            z.messages,
            z.quic_mb_s,
            z.tls_tcp_mb_s,
            z.tcp_mb_s,
            z.ratio,
            z.quic_p50_us,
            z.quic_p99_us,
            z.tls_tcp_p50_us,
            z.tls_tcp_p99_us,
            z.tcp_p50_us,
            z.tcp_p99_us
        );
    }
    s += &format!(
        "\nQUIC sender: {} packets lost, {} congestion events\nratio = QUIC / TLS-over-TCP throughput (target >= 0.8 for tensors >= 1 MiB); goal for 4 MiB+ tensors: {:.0} MB/s\n",
        r.quic_lost_packets, r.quic_congestion_events, r.target_mb_s
    );
    s
}

/// Tensors over QUIC (poolpipe's transport, mutual TLS) against TLS 1.3 over TCP and plain
/// TCP on loopback, in one run: throughput and per-tensor latency for each size, and the
/// QUIC / TLS-over-TCP ratio.
#[derive(clap::Args, Clone, Debug)]
pub struct TransportArgs {
    /// Tensor sizes (binary units: 64K, 1M, 16MiB).
    #[arg(long, value_delimiter = ',', default_value = "64K,1M,4M,16M", value_parser = crate::commands::bench::transport::parse_size)]
    pub sizes: Vec<usize>,
    /// An eighth of the bytes (a few seconds).
    #[arg(long)]
    pub quick: bool,
    /// MiB sent per size and transport in the throughput phase [default: 512; --quick: 64].
    #[arg(long)]
    pub mib: Option<u64>,
    /// Throughput rounds per size; the legs take turns and each leg's median round counts.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Largest UDP payload QUIC's path MTU discovery probes for (loopback carries 65507;
    /// Ethernet 1452).
    #[arg(long, default_value_t = 65507)]
    pub max_udp_payload: u16,
    /// QUIC stream receive window, bytes (K/M suffixes).
    #[arg(long, value_parser = crate::commands::bench::transport::parse_size)]
    pub stream_window: Option<usize>,
    /// QUIC connection receive window, bytes (K/M suffixes).
    #[arg(long, value_parser = crate::commands::bench::transport::parse_size)]
    pub connection_window: Option<usize>,
    /// Batches in flight per peer.
    #[arg(long)]
    pub in_flight: Option<u32>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `poolpipe bench transport`.
pub fn command(a: TransportArgs) -> Result<()> {
    let TransportArgs { sizes, quick, mib, rounds, max_udp_payload, stream_window, connection_window, in_flight, json } =
        a;
    let mut o = if quick {
        poolpipe_transport::bench::BenchOptions::quick()
    } else {
        poolpipe_transport::bench::BenchOptions::default()
    };
    o.sizes = sizes;
    if rounds == 0 {
        anyhow::bail!("--rounds must be at least 1");
    }
    o.rounds = rounds;
    if let Some(m) = mib {
        if m == 0 {
            anyhow::bail!("--mib must be at least 1");
        }
        o.latency_bytes = o.latency_bytes * m / (o.bytes_per_size >> 20);
        o.bytes_per_size = m << 20;
    }
    let c = &mut o.config;
    c.max_udp_payload = max_udp_payload;
    if let Some(w) = stream_window {
        c.stream_window = w as u64;
        c.connection_window = c.connection_window.max(w as u64);
    }
    if let Some(w) = connection_window {
        c.connection_window = w as u64;
    }
    if let Some(n) = in_flight {
        c.max_in_flight = n;
    }
    let report = bench(&o, json)?;
    crate::commands::print_report(&report, json, render)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert!(parse_size("1G").unwrap_err().contains("unknown unit"));
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
    }
}
