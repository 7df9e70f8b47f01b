//! Pre-partitioning: cut a graph's nodes (in topological order) into M contiguous blocks whose
//! runtime shares are close to 1/M on every device class, crossing as few bytes as possible.
//!
//! A cut at position `p` lies between node `p - 1` and node `p`. The tensors crossing it are
//! every activation produced before it (or a graph input) that a node at or after it reads,
//! or that is a graph output: skip connections count. Bytes are per frame at 2 bytes per
//! element (boundary tensors travel as fp16).
//!
//! The algorithm, given per-node costs for each device class (measured latencies, or
//! [`estimate_costs`]). A block's *over-share* is the largest, over classes, of
//! `max(0, share * M - 1)`, its *under-share* the largest of `max(0, 1 - share * M)` (0 =
//! exactly 1/M; an under-share of 1 = an empty share).
//! 1. A dynamic program over (blocks placed, nodes covered) finds the smallest over-share
//!    `o*` any split can achieve: larger than the tolerance only when a node is too heavy
//!    for one block's share. The upper bound is `max(tolerance, o*)`.
//! 2. The same program, over splits within the upper bound, finds the smallest under-share
//!    `u*`; the lower bound is `max(tolerance, u*)`. Relaxing the two bounds separately keeps
//!    one heavy node from letting every other block shrink to nothing.
//! 3. A third program, over splits whose every block is within both bounds, minimises the sum
//!    of the bytes crossing the M - 1 cuts (ties: the earlier cut positions).
//!
//! The bounds met are reported ([`Partition::max_over`], [`Partition::max_under`]). All three
//! programs are exact (O(M N^2 C) for N nodes and C classes); tests compare them with brute
//! force on small graphs.

use crate::error::{EngineError, Result};
use crate::graph::{Graph, ValueSource};
use crate::ops::Op;

/// Bytes per element of tensors crossing a cut (fp16).
pub const CUT_BYTES_PER_ELEMENT: u64 = 2;

/// How to split.
#[derive(Clone, Debug)]
pub struct PartitionOptions {
    /// Number of blocks M.
    pub blocks: usize,
    /// Largest accepted deviation of a block's share from 1/M, relative to 1/M (0.25: every
    /// share within 0.75/M..1.25/M on every class).
    pub tolerance: f64,
}

impl Default for PartitionOptions {
    fn default() -> Self {
        PartitionOptions { blocks: 10, tolerance: 0.25 }
    }
}

/// A split of a graph into contiguous blocks.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Partition {
    /// Node index where each block starts, then the node count: block `b` is
    /// `bounds[b]..bounds[b + 1]`.
    pub bounds: Vec<usize>,
    /// Bytes per frame crossing the cut after each block but the last (fp16).
    pub cut_bytes: Vec<u64>,
    /// Runtime share of each block, per class (`shares[class][block]`).
    pub shares: Vec<Vec<f64>>,
    /// Every block's share is at most `(1 + max_over) / M` on every class: the tolerance, or
    /// the smallest achievable when a node is too large for it.
    pub max_over: f64,
    /// Every block's share is at least `(1 - max_under) / M` on every class: the tolerance,
    /// or the smallest achievable within `max_over`.
    pub max_under: f64,
}

impl Partition {
    /// The node range of block `b`.
    pub fn block(&self, b: usize) -> std::ops::Range<usize> {
        self.bounds[b]..self.bounds[b + 1]
    }

    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.bounds.len() - 1
    }

    /// True when there are no blocks (never for a partition that was computed).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Elements per frame crossing each cut position `p` in `0..=N` (0: the graph inputs, N: the
/// graph outputs).
pub fn crossing_elements(graph: &Graph) -> Vec<u64> {
    let n = graph.nodes().len();
    let mut last_use = vec![None::<usize>; graph.values().len()];
    for (j, node) in graph.nodes().iter().enumerate() {
        for v in &node.inputs {
            last_use[v.index()] = Some(j);
        }
    }
    for v in graph.outputs() {
        last_use[v.index()] = Some(n);
    }
    // A value crosses p when first < p <= last (first: the producing node + 1, or 0).
    let mut diff = vec![0i128; n + 2];
    for (i, v) in graph.values().iter().enumerate() {
        let first = match v.source {
            ValueSource::Input => 0,
            ValueSource::Node(k, _) => k + 1,
            ValueSource::Constant(_) => continue,
        };
        let Some(last) = last_use[i] else { continue };
        if last < first {
            continue;
        }
        let e = v.numel() as i128;
        diff[first] += e;
        diff[last + 1] -= e;
    }
    let mut out = Vec::with_capacity(n + 1);
    let mut acc = 0i128;
    for d in diff.iter().take(n + 1) {
        acc += d;
        out.push(acc as u64);
    }
    out
}

/// A cost per node when no measurement exists: multiply-accumulates plus the elements each
/// node writes (memory-bound operations are not free), views (reshapes) free.
pub fn estimate_costs(graph: &Graph) -> Vec<f64> {
    (0..graph.nodes().len())
        .map(|i| {
            let node = &graph.nodes()[i];
            if matches!(node.op, Op::Reshape { .. }) {
                return 0.0;
            }
            let written: usize = node.outputs.iter().map(|&v| graph.value(v).numel()).sum();
            graph.node_macs(i) as f64 + written as f64
        })
        .collect()
}

/// Splits `graph` into blocks balanced for every class of `costs` (`costs[class][node]`,
/// non-negative, one entry per node) with the fewest crossing bytes.
pub fn partition(graph: &Graph, costs: &[Vec<f64>], opts: &PartitionOptions) -> Result<Partition> {
    let bytes: Vec<u64> = crossing_elements(graph).iter().map(|e| e * CUT_BYTES_PER_ELEMENT).collect();
    partition_costs(&graph.name, &bytes, costs, opts)
}

/// [`partition`] on bare numbers: `cut_bytes[p]` for p in 0..=N and `costs[class][node]`.
pub fn partition_costs(
    name: &str,
    cut_bytes: &[u64],
    costs: &[Vec<f64>],
    opts: &PartitionOptions,
) -> Result<Partition> {
    let bad = |reason: String| EngineError::InvalidGraph { graph: name.to_string(), reason };
    let n = cut_bytes.len().saturating_sub(1);
    let m = opts.blocks;
    if m == 0 || m > n {
        return Err(bad(format!("cannot cut {n} nodes into {m} blocks; choose 1..={n} blocks")));
    }
    if costs.is_empty() {
        return Err(bad("no device class costs given".into()));
    }
    if !(opts.tolerance >= 0.0 && opts.tolerance.is_finite()) {
        return Err(bad(format!("tolerance {} must be a finite number >= 0", opts.tolerance)));
    }
    // Prefix sums of each class's costs, normalised to a total of 1.
    let mut prefix = Vec::with_capacity(costs.len());
    for (c, cl) in costs.iter().enumerate() {
        if cl.len() != n {
            return Err(bad(format!("class {c} has {} node costs, the graph has {n} nodes", cl.len())));
        }
        if cl.iter().any(|x| !(x.is_finite() && *x >= 0.0)) {
            return Err(bad(format!("class {c} has a negative or non-finite node cost")));
        }
        let total: f64 = cl.iter().sum();
        if total <= 0.0 {
            return Err(bad(format!("class {c} has a total cost of zero; nothing to balance")));
        }
        let mut p = Vec::with_capacity(n + 1);
        p.push(0.0);
        for x in cl {
            p.push(p.last().unwrap() + x / total);
        }
        prefix.push(p);
    }
    // Over- and under-share of block [q, p), relative to 1/M, worst over classes.
    let over = |q: usize, p: usize| -> f64 {
        prefix.iter().map(|pr| ((pr[p] - pr[q]) * m as f64 - 1.0).max(0.0)).fold(0.0, f64::max)
    };
    let under = |q: usize, p: usize| -> f64 {
        prefix.iter().map(|pr| (1.0 - (pr[p] - pr[q]) * m as f64).max(0.0)).fold(0.0, f64::max)
    };
    let slack = |x: f64| x * (1.0 + 1e-9) + 1e-12;

    // 1. Smallest achievable over-share (forced by nodes too large for one block's share).
    let best_over = minimax(n, m, |q, p| Some(over(q, p)));
    let max_over = opts.tolerance.max(best_over);
    // 2. Smallest achievable under-share among splits within that over-share.
    let hi = slack(max_over);
    let best_under = minimax(n, m, |q, p| (over(q, p) <= hi).then(|| under(q, p)));
    let max_under = opts.tolerance.max(best_under);
    let lo = slack(max_under);

    // 3. Fewest crossing bytes among splits within both bounds.
    let mut f = vec![vec![u128::MAX; n + 1]; m + 1];
    let mut from = vec![vec![0usize; n + 1]; m + 1];
    f[0][0] = 0;
    for b in 1..=m {
        for p in b..=n - (m - b) {
            let cut = if b < m { cut_bytes[p] as u128 } else { 0 };
            for q in (b - 1)..p {
                if f[b - 1][q] == u128::MAX || over(q, p) > hi || under(q, p) > lo {
                    continue;
                }
                let total = f[b - 1][q] + cut;
                if total < f[b][p] {
                    f[b][p] = total;
                    from[b][p] = q;
                }
            }
        }
    }
    if f[m][n] == u128::MAX {
        return Err(bad("no split meets its own balance bounds (a bug: please report it with the model)".into()));
    }
    let mut bounds = vec![n];
    let mut p = n;
    for b in (1..=m).rev() {
        p = from[b][p];
        bounds.push(p);
    }
    bounds.reverse();
    let shares = prefix.iter().map(|pr| bounds.windows(2).map(|w| pr[w[1]] - pr[w[0]]).collect()).collect();
    let cut_bytes = bounds[1..m].iter().map(|&p| cut_bytes[p]).collect();
    Ok(Partition { bounds, cut_bytes, shares, max_over, max_under })
}

/// The smallest, over splits of `n` nodes into `m` blocks whose every block `[q, p)` has a
/// cost (`cost(q, p)` is `None` for blocks not allowed), of the largest block cost.
/// Infinity when no split is allowed.
fn minimax(n: usize, m: usize, cost: impl Fn(usize, usize) -> Option<f64>) -> f64 {
    let inf = f64::INFINITY;
    let mut g = vec![vec![inf; n + 1]; m + 1];
    g[0][0] = 0.0;
    for b in 1..=m {
        for p in b..=n - (m - b) {
            let prev = &g[b - 1];
            let best = ((b - 1)..p)
                .filter(|&q| prev[q] < inf)
                .filter_map(|q| cost(q, p).map(|c| prev[q].max(c)))
                .fold(inf, f64::min);
            g[b][p] = best;
        }
    }
    g[m][n]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Rng;

    /// Every split of n nodes into m non-empty blocks, as bounds.
    fn all_splits(n: usize, m: usize) -> Vec<Vec<usize>> {
        fn rec(start: usize, n: usize, left: usize, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
            if left == 1 {
                let mut b = cur.clone();
                b.push(n);
                out.push(b);
                return;
            }
            for p in start + 1..=n - (left - 1) {
                cur.push(p);
                rec(p, n, left - 1, cur, out);
                cur.pop();
            }
        }
        let mut out = vec![];
        rec(0, n, m, &mut vec![0], &mut out);
        out
    }

    #[test]
    fn matches_brute_force_on_small_instances() {
        let mut rng = Rng::new(11);
        for case in 0..300 {
            let n = rng.range(2, 10); // Rng::range is inclusive
            let m = rng.range(1, n.min(5));
            let classes = rng.range(1, 3);
            let costs: Vec<Vec<f64>> = (0..classes)
                .map(|_| (0..n).map(|_| if rng.coin() { rng.uniform(0.0, 10.0) as f64 } else { 1.0 }).collect())
                .collect();
            let bytes: Vec<u64> = (0..=n).map(|_| rng.range(0, 1000) as u64).collect();
            let tolerance = [0.0, 0.2, 0.5, 5.0][rng.range(0, 3)];
            let opts = PartitionOptions { blocks: m, tolerance };
            let got = partition_costs("t", &bytes, &costs, &opts).unwrap();

            let splits = all_splits(n, m);
            // (largest over-share, largest under-share) of a split.
            let devs = |b: &Vec<usize>| -> (f64, f64) {
                let (mut o, mut u): (f64, f64) = (0.0, 0.0);
                for cl in &costs {
                    let total: f64 = cl.iter().sum();
                    for w in b.windows(2) {
                        let x = cl[w[0]..w[1]].iter().sum::<f64>() / total * m as f64;
                        o = o.max(x - 1.0);
                        u = u.max(1.0 - x);
                    }
                }
                (o, u)
            };
            let best_over = splits.iter().map(|b| devs(b).0).fold(f64::INFINITY, f64::min);
            let hi = tolerance.max(best_over);
            let within_hi: Vec<&Vec<usize>> = splits.iter().filter(|b| devs(b).0 <= hi + 1e-9).collect();
            let best_under = within_hi.iter().map(|b| devs(b).1).fold(f64::INFINITY, f64::min);
            let lo = tolerance.max(best_under);
            let cost_of = |b: &Vec<usize>| -> u64 { b[1..m].iter().map(|&p| bytes[p]).sum() };
            let best_bytes = within_hi.iter().filter(|b| devs(b).1 <= lo + 1e-9).map(|b| cost_of(b)).min().unwrap();
            assert!((got.max_over - hi).abs() < 1e-9, "case {case}: upper bound {} vs {hi}", got.max_over);
            assert!((got.max_under - lo).abs() < 1e-9, "case {case}: lower bound {} vs {lo}", got.max_under);
            assert_eq!(cost_of(&got.bounds), best_bytes, "case {case}: {got:?}");
            let (o, u) = devs(&got.bounds);
            assert!(o <= hi + 1e-9 && u <= lo + 1e-9, "case {case}");
            assert_eq!(got.cut_bytes.iter().sum::<u64>(), best_bytes);
            assert_eq!(got.len(), m);
        }
    }

    #[test]
    fn skip_connections_cross_cuts() {
        use crate::graph::GraphBuilder;
        use crate::ops::{Activation, BinaryOp};
        let mut g = GraphBuilder::new("skip");
        let x = g.input("x", &[4, 8, 8]);
        let a = g.unary("a", x, Activation::Relu).unwrap(); // node 0
        let b = g.unary("b", a, Activation::Sigmoid).unwrap(); // node 1
        let c = g.unary("c", b, Activation::Tanh).unwrap(); // node 2
        let d = g.binary("d", BinaryOp::Add, a, c).unwrap(); // node 3: reads a again
        g.output(d);
        let graph = g.build().unwrap();
        // p=0: x; p=1: a; p=2: a and b; p=3: a and c; p=4: d.
        assert_eq!(crossing_elements(&graph), vec![256, 256, 512, 512, 256]);
        let part = partition(&graph, &[vec![1.0; 4]], &PartitionOptions { blocks: 2, tolerance: 0.0 }).unwrap();
        assert_eq!(part.bounds, vec![0, 2, 4]);
        assert_eq!(part.cut_bytes, vec![1024]);
        // With slack, the cheaper cut after node 0 wins.
        let part = partition(&graph, &[vec![1.0; 4]], &PartitionOptions { blocks: 2, tolerance: 0.5 }).unwrap();
        assert_eq!(part.bounds, vec![0, 1, 4]);
        assert_eq!(part.cut_bytes, vec![512]);
    }

    /// On built-in models, the tensors crossing each cut are exactly the inputs of the stage
    /// that starts there (as `Graph::slice_nodes` finds them), and a 4-block split of the
    /// estimated costs is balanced within the tolerance or reports its best bound.
    #[test]
    fn crossing_tensors_are_the_next_stages_inputs() {
        for name in ["resnet-mini", "mobilenet-mini", "segnet-mini"] {
            let g = crate::models::builtin(name, 32, 3).unwrap().graph(1).unwrap();
            let n = g.nodes().len();
            let cross = crossing_elements(&g);
            for (p, &crossing) in cross.iter().enumerate().take(n).skip(1) {
                let stage = g.slice_nodes(p..n).unwrap();
                let want: u64 = stage.inputs().iter().map(|&v| stage.value(v).numel() as u64).sum();
                assert_eq!(crossing, want, "{name} cut {p}");
            }
            let costs = estimate_costs(&g);
            let part = partition(&g, &[costs], &PartitionOptions { blocks: 4, tolerance: 0.3 }).unwrap();
            assert_eq!(part.len(), 4);
            for s in &part.shares[0] {
                assert!(s * 4.0 - 1.0 <= part.max_over + 1e-9, "{name}: {part:?}");
                assert!(1.0 - s * 4.0 <= part.max_under + 1e-9, "{name}: {part:?}");
            }
        }
    }

    /// One heavy node forces a large upper bound, but the other blocks stay full: the cheap
    /// nodes before it are not cut into near-empty blocks even where those cuts are cheapest.
    #[test]
    fn a_heavy_node_does_not_empty_the_other_blocks() {
        let costs = vec![vec![1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.01, 0.01, 10.0]];
        let bytes: Vec<u64> = vec![0, 100, 100, 100, 100, 100, 100, 1, 1, 0];
        let p = partition_costs("heavy", &bytes, &costs, &PartitionOptions { blocks: 4, tolerance: 0.25 }).unwrap();
        // The heavy node alone is 10 / 16.02 of the runtime: 2.5 times a block's share.
        assert!((p.max_over - (10.0 / 16.02 * 4.0 - 1.0)).abs() < 1e-9, "{p:?}");
        // Six unit nodes in three blocks: the smallest holds 2 units, i.e. 0.4994 of 1/M.
        assert!((p.max_under - (1.0 - 2.0 / 16.02 * 4.0)).abs() < 1e-9, "{p:?}");
        // Cutting at 7 and 8 would save 198 bytes but leave a block of 0.01.
        assert_eq!(p.bounds, vec![0, 2, 4, 8, 9]);
    }

    #[test]
    fn bad_options_are_errors() {
        let bytes = vec![1, 2, 3];
        let one = vec![vec![1.0, 1.0]];
        let e = |o: PartitionOptions, c: &[Vec<f64>]| partition_costs("g", &bytes, c, &o).unwrap_err().to_string();
        assert!(e(PartitionOptions { blocks: 3, tolerance: 0.1 }, &one).contains("1..=2 blocks"));
        assert!(e(PartitionOptions { blocks: 0, tolerance: 0.1 }, &one).contains("into 0 blocks"));
        assert!(e(PartitionOptions { blocks: 1, tolerance: f64::NAN }, &one).contains("tolerance"));
        assert!(e(PartitionOptions::default().with_blocks(1), &[vec![1.0]]).contains("1 node costs"));
        assert!(e(PartitionOptions::default().with_blocks(1), &[vec![0.0, 0.0]]).contains("zero"));
        assert!(e(PartitionOptions::default().with_blocks(1), &[vec![-1.0, 2.0]]).contains("negative"));
        assert!(e(PartitionOptions::default().with_blocks(1), &[]).contains("no device class"));
    }

    impl PartitionOptions {
        fn with_blocks(mut self, m: usize) -> Self {
            self.blocks = m;
            self
        }
    }
}
