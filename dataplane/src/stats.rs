//! The one percentile of the project (`poolpipe simulate`, `poolpipe load`, `poolpipe bench
//! transport` and `poolpipe bench serving` all report with it), and the latency histogram of
//! the `/metrics` page.
//!
//! Nearest rank: the `q`-quantile of `n` sorted values is the value of rank `ceil(q x n)`
//! (1-based, at least 1), so every reported percentile is a value that was measured, and p100
//! is the maximum. p50 of 1..=4 is 2; p99 of 100 values is the 99th.

/// The nearest-rank `q`-quantile (`q` in [0, 1]) of values sorted ascending; 0 when there are
/// none.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Sorts `values` (NaN last) and returns the nearest-rank quantiles `qs` of them.
pub fn percentiles(mut values: Vec<f64>, qs: &[f64]) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    qs.iter().map(|&q| percentile(&values, q)).collect()
}

/// Latency histogram bounds, seconds.
const BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, f64::INFINITY];

/// A Prometheus histogram of seconds over fixed bounds (5 ms to 10 s, then +Inf).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Histogram {
    /// Observations at or under each bound (cumulative, as exposed).
    pub buckets: [u64; 12],
    /// Sum of the observations, seconds.
    pub sum: f64,
    /// Observations.
    pub count: u64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&mut self, secs: f64) {
        for (i, &b) in BUCKETS.iter().enumerate() {
            if secs <= b {
                self.buckets[i] += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }

    /// The exposition lines of one series: `NAME_bucket{LABELS,le=...}`, `NAME_sum`,
    /// `NAME_count`; `labels` is empty or `key="value",...`.
    pub fn render(&self, name: &str, labels: &str) -> String {
        let mut out = String::new();
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, n) in BUCKETS.iter().zip(&self.buckets) {
            let le = if b.is_infinite() { "+Inf".to_string() } else { b.to_string() };
            out += &format!("{name}_bucket{{{labels}{sep}le=\"{le}\"}} {n}\n");
        }
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        out += &format!("{name}_sum{braces} {}\n{name}_count{braces} {}\n", self.sum, self.count);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=4).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 2.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 1.0), 4.0);
        assert_eq!(percentile(&v, 0.51), 3.0);
        let h: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&h, 0.99), 99.0);
        assert_eq!(percentile(&h, 0.995), 100.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
        assert_eq!(percentiles(vec![3.0, 1.0, 2.0], &[0.5, 1.0]), vec![2.0, 3.0]);
    }
}
