//! `poolpipe profile`: per-block latency profiles of a model on one device class, written in
//! the format of the published PPipe profiles (`../shared/ppipe-data`) so the planner takes
//! measured and published profiles alike.
//!
//! The measuring is the engine's ([`poolpipe_engine::profile`]); this module chooses the
//! class, keeps the partition and writes the files. Steps:
//! 1. The model is loaded and rewritten ([`poolpipe_engine::optimize`]): blocks are cut from
//!    the graph the device runs.
//! 2. Node costs: every node runs alone at batch 1 (median of the timed runs); written to
//!    `node-costs/{model}-{class}.csv` (one value a node, microseconds).
//! 3. Blocks: [`poolpipe_engine::partition`] over the node costs of every class profiled so
//!    far in the output folder (balanced on each of them), the fewest fp16 bytes crossing
//!    the cuts. The partition is kept in `partitions/{model}.json` and reused by later
//!    classes, so every class's rows are the same blocks (as the cut-bytes file assumes);
//!    `--repartition` recomputes it, and block files of other classes that no longer match
//!    are renamed `*.csv.stale` (never deleted).
//! 4. Sweep: every block, as the stage that runs it in a pipeline (boundary tensors in fp16,
//!    unpacked and packed on the device), at every batch size and share k: k copies on k
//!    devices opened on the adapter run concurrently, each block run timed; the median over
//!    all copies' timed runs after the warm-up. Batch sizes per share as published: batches
//!    1..=B/k (8, 4, 2, 2 columns for B = 8).
//! 5. The whole model at share 1, each batch, for the cost of cutting.
//!
//! Output folder: `block-latency/{model}-{class}-{k}.csv` (no header, row = block, column c
//! = batch c + 1, integer microseconds), `cut-bytes/{model}.csv` (M - 1 lines, fp16 bytes per
//! frame crossing each cut), `manifests/{model}-{class}.json` (device, backend, driver,
//! date, M, method), plus the node costs and partition above. Files are written whole
//! (temporary file, then rename).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use poolpipe_engine::boundary::Precision;
use poolpipe_engine::gpu::{AdapterSelector, Device};
use poolpipe_engine::partition::{PartitionOptions, crossing_elements, partition};
use poolpipe_engine::profile::{self as engine_profile, MeasureOptions};
use poolpipe_engine::{Graph, Rng};
use serde::Serialize;

use crate::classes::{ClassConfig, LabelSource, validate};
use crate::models::{PartitionFile, fingerprint};

/// How block latencies are timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Timing {
    /// GPU timestamps when the adapter has them, else wall clock.
    Auto,
    /// GPU timestamp queries (an error when the adapter has none).
    Gpu,
    /// Wall clock around each run: upload, kernels, read-back.
    Wall,
}

/// What `poolpipe profile` is asked to do.
#[derive(Clone, Debug)]
pub struct ProfileOptions {
    /// Built-in model name or .onnx path.
    pub model: String,
    /// Name in the file names (default: the file stem or built-in name).
    pub name: Option<String>,
    /// Frame size of built-in models.
    pub size: usize,
    /// Per-frame input shape of ONNX models with symbolic sizes.
    pub input_shape: Option<Vec<usize>>,
    /// Seed of built-in weights and inputs.
    pub seed: u64,
    /// Adapter.
    pub device: AdapterSelector,
    /// Class label (default: from the class file or the adapter name).
    pub class: Option<String>,
    /// Class file.
    pub classes: Option<PathBuf>,
    /// Output folder.
    pub out: PathBuf,
    /// Number of blocks M.
    pub blocks: usize,
    /// Balance tolerance (see [`PartitionOptions::tolerance`]).
    pub tolerance: f64,
    /// Largest batch at share 1 (batches 1..=max_batch / k at share 1/k).
    pub max_batch: usize,
    /// Shares k (k copies on the device).
    pub shares: Vec<usize>,
    /// Untimed runs before timing.
    pub warmup: usize,
    /// Timed runs per copy (median taken).
    pub iters: usize,
    /// Timing method.
    pub timing: Timing,
    /// Precision of boundary tensors.
    pub precision: Precision,
    /// Recompute the partition even if the folder has one.
    pub repartition: bool,
    /// Show progress bars.
    pub progress: bool,
}

/// Batch sizes profiled at share k: 1..=max(1, max_batch / k).
pub fn batches_for_share(max_batch: usize, k: usize) -> usize {
    (max_batch / k).max(1)
}

/// Latencies at one share.
#[derive(Clone, Debug, Serialize)]
pub struct ShareTable {
    /// k.
    pub share: usize,
    /// `us[block][batch - 1]`, integer microseconds (as written).
    pub us: Vec<Vec<u64>>,
    /// File written.
    pub file: PathBuf,
}

/// Balance bounds of a partition.
#[derive(Clone, Debug, Serialize)]
pub struct BalanceBounds {
    /// Largest under-share accepted, relative to 1/M.
    pub under: f64,
    /// Largest over-share accepted, relative to 1/M.
    pub over: f64,
}

/// Device facts in the manifest.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceFacts {
    /// Adapter name.
    pub name: String,
    /// Vendor.
    pub vendor: String,
    /// Backend.
    pub backend: String,
    /// Device type.
    pub device_type: String,
    /// Driver name and version.
    pub driver: String,
    /// Class label and its source.
    pub class: String,
    /// config, derived or given.
    pub class_source: LabelSource,
}

/// What `poolpipe profile` did (also the manifest written beside the profiles).
#[derive(Clone, Debug, Serialize)]
pub struct ProfileReport {
    /// Model name in the file names.
    pub model: String,
    /// Class label.
    pub class: String,
    /// Device.
    pub device: DeviceFacts,
    /// UTC date and time of the measurement (RFC 3339).
    pub date: String,
    /// poolpipe version.
    pub poolpipe_version: String,
    /// Number of blocks M.
    pub blocks: usize,
    /// "gpu-timestamps" or "wall-clock".
    pub method: String,
    /// In words: what was timed and how.
    pub method_detail: String,
    /// Warm-up runs, timed runs per copy.
    pub warmup: usize,
    /// Timed runs per copy.
    pub iters: usize,
    /// Precision of boundary tensors.
    pub boundary_precision: Precision,
    /// Shares profiled, with their tables.
    pub shares: Vec<ShareTable>,
    /// Whole-model latency at share 1, per batch (integer microseconds).
    pub whole_model_us: Vec<u64>,
    /// Sum of the block latencies at share 1, per batch.
    pub sum_of_blocks_us: Vec<u64>,
    /// Bytes per frame crossing each cut (fp16).
    pub cut_bytes: Vec<u64>,
    /// Node range of each block: `bounds[b]..bounds[b + 1]`.
    pub bounds: Vec<usize>,
    /// Share of this class's node-cost total in each block.
    pub block_shares: Vec<f64>,
    /// Smallest and largest block share on this class, times M (1 = exactly 1/M).
    pub share_range: [f64; 2],
    /// The balance bounds the partition meets on the classes it was cut for: every share
    /// within `(1 - under) / M ..= (1 + over) / M`.
    pub balance_bounds: BalanceBounds,
    /// Whether the partition was computed now or reused from the folder.
    pub partition_reused: bool,
    /// Block files of other classes renamed to *.stale by --repartition.
    pub stale: Vec<PathBuf>,
    /// Environment variables that change a software adapter's speed (LP_NUM_THREADS, ...).
    pub env: std::collections::BTreeMap<String, String>,
    /// Every file written.
    pub files: Vec<PathBuf>,
    /// Seconds the whole profile took.
    pub seconds: f64,
}

fn write_atomic(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// The model's name in file names: the given one or the file stem / built-in name.
fn model_name(o: &ProfileOptions) -> Result<String> {
    let name = match &o.name {
        Some(n) => n.clone(),
        None => Path::new(&o.model).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
    };
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        bail!("model name '{name}' cannot name profile files; pass --name NAME");
    }
    Ok(name)
}

/// UTC date-time in RFC 3339 from the system clock.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn csv_rows(rows: &[Vec<u64>]) -> String {
    rows.iter().map(|r| r.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",") + "\n").collect()
}

/// Reads node costs of other classes stored for this model (same node count).
fn stored_node_costs(out: &Path, model: &str, class: &str, nodes: usize) -> Result<Vec<(String, Vec<f64>)>> {
    let dir = out.join("node-costs");
    let mut found = vec![];
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(found) };
    let prefix = format!("{model}-");
    let mut names: Vec<String> = entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    names.sort();
    for name in names {
        let Some(other) = name.strip_prefix(&prefix).and_then(|r| r.strip_suffix(".csv")) else { continue };
        if other == class || other.contains('-') {
            continue;
        }
        let path = dir.join(&name);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let costs: Result<Vec<f64>, _> =
            text.lines().filter(|l| !l.trim().is_empty()).map(|l| l.trim().parse::<f64>()).collect();
        match costs {
            Ok(c) if c.len() == nodes => found.push((other.to_string(), c)),
            Ok(c) => {
                tracing::warn!(file = %path.display(), nodes = c.len(), expected = nodes, "node costs of another graph; ignored")
            }
            Err(e) => bail!("{}: not one number a line ({e}); delete it or profile that class again", path.display()),
        }
    }
    Ok(found)
}

/// Runs the whole profile.
pub fn profile(o: &ProfileOptions) -> Result<ProfileReport> {
    let started = Instant::now();
    let model = model_name(o)?;
    if o.iters == 0 {
        bail!("--iters must be at least 1");
    }
    if o.max_batch == 0 || o.max_batch > 64 {
        bail!("--batches must end between 1 and 64");
    }
    if o.shares.is_empty() || o.shares.iter().any(|&k| k == 0 || k > 8) {
        bail!("--shares takes numbers of copies between 1 and 8, e.g. 1,2,3,4");
    }
    let loaded = std::sync::Arc::new(crate::models::load_model(&o.model, o.size, o.seed, o.input_shape.as_deref())?);
    let g = loaded.optimized(1)?;
    let n = g.nodes().len();
    if o.blocks == 0 || o.blocks > n {
        bail!("cannot cut '{model}' ({n} nodes after rewrites) into {} blocks; use --blocks 1..={n}", o.blocks);
    }
    let device = Device::open(&o.device)?;
    let adapter = device.adapter().clone();
    let (class, class_source) = match &o.class {
        Some(c) => (c.clone(), LabelSource::Given),
        None => ClassConfig::load(o.classes.as_deref())?.label(&adapter),
    };
    validate(&class)?;
    let gpu = match o.timing {
        Timing::Wall => false,
        Timing::Auto => device.has_timestamps(),
        Timing::Gpu if device.has_timestamps() => true,
        Timing::Gpu => bail!("adapter '{}' has no GPU timestamp queries; use --timing wall", adapter.name),
    };
    let (method, method_detail) = if gpu {
        (
            "gpu-timestamps",
            "GPU timestamp queries at the beginning and end of the compute pass of each run: every kernel of the block, including the fp16 unpack/pack of its boundary tensors; uploads and read-backs excluded",
        )
    } else {
        (
            "wall-clock",
            "wall clock around each run: upload of the boundary tensors, every kernel of the block, read-back of its outputs",
        )
    };
    tracing::info!(%model, %class, device = %adapter.name, method, "profiling");
    let mut files = vec![];
    let mut rng = Rng::new(o.seed);

    // Progress over the whole sweep.
    let sweep: usize = o.shares.iter().map(|&k| o.blocks * batches_for_share(o.max_batch, k)).sum();
    let total = n + sweep + batches_for_share(o.max_batch, 1);
    let pb = if o.progress {
        crate::progress(total as u64, &format!("{model} on {class}"))
    } else {
        indicatif::ProgressBar::hidden()
    };

    // 2. Node costs at batch 1.
    let mo = MeasureOptions { warmup: o.warmup, iters: o.iters, gpu_timestamps: gpu };
    pb.set_message(format!("{model} on {class}: node costs"));
    let node_us = engine_profile::node_costs(&device, &g, &mo, &mut rng, &mut || pb.inc(1))?;
    let costs_path = out_path(&o.out, "node-costs", &format!("{model}-{class}.csv"));
    write_atomic(&costs_path, &node_us.iter().map(|x| format!("{x:.1}\n")).collect::<String>())?;
    files.push(costs_path);

    // 3. The partition: reused, or computed from every class's node costs.
    let fp = fingerprint(&g);
    let part_path = out_path(&o.out, "partitions", &format!("{model}.json"));
    let existing: Option<PartitionFile> = if part_path.is_file() {
        let text = std::fs::read_to_string(&part_path).with_context(|| format!("reading {}", part_path.display()))?;
        Some(serde_json::from_str(&text).with_context(|| {
            format!("{} is not a partition file; delete it or pass --repartition", part_path.display())
        })?)
    } else {
        None
    };
    let mut stale = vec![];
    let (pf, reused) = match existing {
        Some(pf) if !o.repartition => {
            if pf.fingerprint != fp || pf.nodes != n {
                bail!(
                    "{} was made for a different graph named '{model}' ({} nodes, now {n}); pass --name to file this model under another name, or --repartition to replace it",
                    part_path.display(),
                    pf.nodes
                );
            }
            if pf.partition.len() != o.blocks {
                bail!(
                    "{} cuts '{model}' into {} blocks, not {}; pass --blocks {} to profile another class on the same blocks, or --repartition",
                    part_path.display(),
                    pf.partition.len(),
                    o.blocks,
                    pf.partition.len()
                );
            }
            (pf, true)
        }
        previous => {
            let mut classes = vec![(class.clone(), node_us.clone())];
            classes.extend(stored_node_costs(&o.out, &model, &class, n)?);
            let costs: Vec<Vec<f64>> = classes.iter().map(|(_, c)| c.iter().map(|x| x.max(0.0)).collect()).collect();
            let p = partition(&g, &costs, &PartitionOptions { blocks: o.blocks, tolerance: o.tolerance })?;
            if p.max_over > o.tolerance || p.max_under > o.tolerance {
                tracing::warn!(
                    tolerance = o.tolerance,
                    max_over = p.max_over,
                    max_under = p.max_under,
                    "no split meets the balance tolerance on every class (a node is heavier than a block's share, or fewer blocks would suit the model); using the best balance there is"
                );
            }
            if previous.is_some_and(|old| old.partition.bounds != p.bounds) {
                stale = mark_stale(&o.out, &model, &class)?;
            }
            let crossing = crossing_tensors(&g);
            let pf = PartitionFile {
                model: model.clone(),
                nodes: n,
                fingerprint: fp,
                balanced_on: classes.iter().map(|(c, _)| c.clone()).collect(),
                tolerance: o.tolerance,
                cut_tensors: p.bounds[1..p.bounds.len() - 1].iter().map(|&b| crossing[b].clone()).collect(),
                block_starts: p.bounds[..p.bounds.len() - 1].iter().map(|&b| g.nodes()[b].name.clone()).collect(),
                partition: p,
            };
            write_atomic(&part_path, &serde_json::to_string_pretty(&pf)?)?;
            files.push(part_path.clone());
            (pf, false)
        }
    };
    let p = &pf.partition;
    let m = p.len();
    let total_cost: f64 = node_us.iter().sum::<f64>().max(f64::MIN_POSITIVE);
    let block_shares: Vec<f64> = (0..m).map(|b| node_us[p.block(b)].iter().sum::<f64>() / total_cost).collect();
    let smallest = block_shares.iter().copied().fold(f64::INFINITY, f64::min) * m as f64;
    let largest = block_shares.iter().copied().fold(0.0, f64::max) * m as f64;
    if largest - 1.0 > p.max_over + 1e-9 || 1.0 - smallest > p.max_under + 1e-9 {
        tracing::warn!(
            %class, smallest, largest, max_over = p.max_over, max_under = p.max_under,
            "blocks are less balanced on this class than on the classes they were cut for; --repartition balances on every class profiled so far"
        );
    }
    let cut_path = out_path(&o.out, "cut-bytes", &format!("{model}.csv"));
    write_atomic(&cut_path, &p.cut_bytes.iter().map(|b| format!("{b}\n")).collect::<String>())?;
    files.push(cut_path);

    // 4. The sweep over shares, blocks and batches.
    let mut tables = vec![];
    for &k in &o.shares {
        let cols = batches_for_share(o.max_batch, k);
        let mut devices = vec![device.clone()];
        for _ in 1..k {
            devices.push(
                Device::open(&o.device)
                    .with_context(|| format!("opening copy {} of {k} on the adapter", devices.len() + 1))?,
            );
        }
        let mut step = |b: usize, _batch: usize| {
            pb.set_message(format!("{model} on {class}: k={k} block {}/{m}", b + 1));
            pb.inc(1);
        };
        let us = engine_profile::block_latencies(&devices, &loaded, p, o.precision, cols, &mo, &mut rng, &mut step)
            .with_context(|| format!("profiling the blocks at share 1/{k}"))?;
        let us: Vec<Vec<u64>> = us.iter().map(|r| r.iter().map(|t| (t.round() as u64).max(1)).collect()).collect();
        let file = out_path(&o.out, "block-latency", &format!("{model}-{class}-{k}.csv"));
        write_atomic(&file, &csv_rows(&us))?;
        files.push(file.clone());
        tables.push(ShareTable { share: k, us, file });
    }

    // 5. The whole model at share 1.
    pb.set_message(format!("{model} on {class}: whole model"));
    let cols1 = batches_for_share(o.max_batch, 1);
    let whole_model_us: Vec<u64> =
        engine_profile::whole_latencies(&device, &loaded, cols1, &mo, &mut rng, &mut |_| pb.inc(1))?
            .iter()
            .map(|t| (t.round() as u64).max(1))
            .collect();
    pb.finish_and_clear();
    let sum_of_blocks_us = match tables.iter().find(|t| t.share == 1) {
        Some(t) => (0..cols1).map(|c| t.us.iter().map(|r| r[c]).sum()).collect(),
        None => vec![],
    };

    let env = ["LP_NUM_THREADS", "WGPU_BACKEND", "MESA_VK_DEVICE_SELECT", "VK_ICD_FILENAMES"]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    let manifest_path = out_path(&o.out, "manifests", &format!("{model}-{class}.json"));
    files.push(manifest_path.clone());
    let report = ProfileReport {
        model: model.clone(),
        class: class.clone(),
        device: DeviceFacts {
            name: adapter.name.clone(),
            vendor: adapter.vendor.clone(),
            backend: adapter.backend.clone(),
            device_type: adapter.device_type.clone(),
            driver: adapter.driver.clone(),
            class,
            class_source,
        },
        date: utc_now(),
        poolpipe_version: env!("CARGO_PKG_VERSION").to_string(),
        blocks: m,
        method: method.to_string(),
        method_detail: format!(
            "{method_detail}; median of {} timed runs per copy after {} warm-up runs; share 1/k = k copies on k devices of the adapter running at once; node costs: each node alone at batch 1",
            o.iters, o.warmup
        ),
        warmup: o.warmup,
        iters: o.iters,
        boundary_precision: o.precision,
        shares: tables,
        whole_model_us,
        sum_of_blocks_us,
        cut_bytes: p.cut_bytes.clone(),
        bounds: p.bounds.clone(),
        block_shares,
        share_range: [smallest, largest],
        balance_bounds: BalanceBounds { under: p.max_under, over: p.max_over },
        partition_reused: reused,
        stale,
        env,
        files,
        seconds: 0.0,
    };
    let mut report = report;
    report.seconds = started.elapsed().as_secs_f64();
    write_atomic(&manifest_path, &serde_json::to_string_pretty(&report)?)?;
    Ok(report)
}

fn out_path(out: &Path, dir: &str, file: &str) -> PathBuf {
    out.join(dir).join(file)
}

/// Names of the tensors crossing each cut position (see [`crossing_elements`]).
fn crossing_tensors(g: &Graph) -> Vec<Vec<String>> {
    let n = g.nodes().len();
    debug_assert_eq!(crossing_elements(g).len(), n + 1);
    let mut last_use = vec![None::<usize>; g.values().len()];
    for (j, node) in g.nodes().iter().enumerate() {
        for v in &node.inputs {
            last_use[v.index()] = Some(j);
        }
    }
    for v in g.outputs() {
        last_use[v.index()] = Some(n);
    }
    let mut out = vec![vec![]; n + 1];
    for (i, v) in g.values().iter().enumerate() {
        let first = match v.source {
            poolpipe_engine::ValueSource::Input => 0,
            poolpipe_engine::ValueSource::Node(k, _) => k + 1,
            poolpipe_engine::ValueSource::Constant(_) => continue,
        };
        if let Some(last) = last_use[i] {
            for cut in out.iter_mut().take(last + 1).skip(first) {
                cut.push(v.name.clone());
            }
        }
    }
    out
}

/// Renames block files of other classes for `model` to `*.csv.stale`.
fn mark_stale(out: &Path, model: &str, class: &str) -> Result<Vec<PathBuf>> {
    let dir = out.join("block-latency");
    let mut renamed = vec![];
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(renamed) };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(&format!("{model}-")).and_then(|r| r.strip_suffix(".csv")) else { continue };
        // rest = CLASS-K with CLASS free of '-'.
        let Some((c, k)) = rest.rsplit_once('-') else { continue };
        if c == class || c.contains('-') || k.parse::<usize>().is_err() {
            continue;
        }
        let to = dir.join(format!("{name}.stale"));
        std::fs::rename(e.path(), &to).with_context(|| format!("renaming {}", e.path().display()))?;
        tracing::warn!(file = %to.display(), "blocks changed: this class's profile no longer matches; profile it again");
        renamed.push(to);
    }
    renamed.sort();
    Ok(renamed)
}

/// The report as tables for people.
pub fn render(r: &ProfileReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} on {} (class {}, {}), {} blocks, {}; median of {} runs after {} warm-up",
        r.model, r.device.name, r.class, r.device.backend, r.blocks, r.method, r.iters, r.warmup
    );
    let _ = writeln!(
        s,
        "partition {}; block shares on this class {:.2}..{:.2} of 1/M (bounds {:.2}..{:.2}); boundary tensors {}",
        if r.partition_reused { "reused from the folder" } else { "computed" },
        r.share_range[0],
        r.share_range[1],
        1.0 - r.balance_bounds.under,
        1.0 + r.balance_bounds.over,
        r.boundary_precision
    );
    for t in &r.shares {
        let _ = writeln!(s, "\nshare 1/{} (us per batch, batch 1..{}):", t.share, t.us.first().map_or(0, |r| r.len()));
        for (b, row) in t.us.iter().enumerate() {
            let cut = r.cut_bytes.get(b).map_or(String::new(), |c| format!("  cut {c} B"));
            let _ = writeln!(
                s,
                "  block {b:>2} nodes {:>4}..{:<4} {}{cut}",
                r.bounds[b],
                r.bounds[b + 1],
                row.iter().map(|x| format!("{x:>9}")).collect::<String>()
            );
        }
    }
    if !r.sum_of_blocks_us.is_empty() {
        let _ = writeln!(s, "\ncost of cutting (share 1): batch, sum of blocks, whole model, ratio");
        for (i, (sum, whole)) in r.sum_of_blocks_us.iter().zip(&r.whole_model_us).enumerate() {
            let _ = writeln!(s, "  {:>2} {sum:>10} {whole:>10} {:>7.2}x", i + 1, *sum as f64 / (*whole).max(1) as f64);
        }
    }
    for f in &r.stale {
        let _ = writeln!(s, "stale (blocks changed, profile that class again): {}", f.display());
    }
    let _ = writeln!(s, "\nwrote {} files under the output folder in {:.1} s", r.files.len(), r.seconds);
    s
}
/// Profile a model per block on one device class: latency of every block at every batch
/// size and share, in the published PPipe format (block-latency/, cut-bytes/), with a
/// manifest of how it was measured.
#[derive(clap::Args, Clone, Debug)]
pub struct ProfileArgs {
    /// An .onnx file or a built-in model name.
    pub model: String,
    /// Output folder (created; profiles of other models and classes in it are kept).
    #[arg(long, value_name = "DIR")]
    pub out: std::path::PathBuf,
    /// Adapter (as for `run`).
    #[arg(long, default_value = "default")]
    pub device: AdapterSelector,
    /// Device class label in the file names [default: from the class file, else derived
    /// from the adapter name, as `poolpipe devices` shows].
    #[arg(long)]
    pub class: Option<String>,
    /// Class file (as for `devices`).
    #[arg(long, value_name = "FILE")]
    pub classes: Option<std::path::PathBuf>,
    /// Model name in the file names [default: the file stem or built-in name].
    #[arg(long)]
    pub name: Option<String>,
    /// Number of blocks M.
    #[arg(long, default_value_t = 10)]
    pub blocks: usize,
    /// Largest accepted deviation of a block's runtime share from 1/M, relative to 1/M
    /// (the best achievable balance is used when no split meets it).
    #[arg(long, default_value_t = 0.25)]
    pub tolerance: f64,
    /// Batch sizes at share 1: 1..B (share 1/k profiles batches 1..B/k, as published:
    /// 8, 4, 2, 2 columns for B = 8).
    #[arg(long, default_value = "1..8", value_name = "1..B")]
    pub batches: BatchRange,
    /// Shares: k copies of the block run on the device at once for share 1/k.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4")]
    pub shares: Vec<usize>,
    /// Untimed runs before timing.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed runs per copy (the median is reported).
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// How runs are timed: GPU timestamps when the adapter has them (auto), or wall clock.
    #[arg(long, value_enum, default_value = "auto")]
    pub timing: crate::commands::profile::Timing,
    /// Precision of boundary tensors between blocks.
    #[arg(long, default_value = "fp16")]
    pub precision: poolpipe_engine::boundary::Precision,
    /// Recompute the blocks even when the folder has a partition of this model (block files
    /// of other classes that no longer match are renamed *.stale).
    #[arg(long)]
    pub repartition: bool,
    /// Per-frame input shape for ONNX models with symbolic sizes, e.g. 3x224x224.
    #[arg(long, value_name = "CxHxW")]
    pub input_shape: Option<crate::models::Shape>,
    /// Frame size of built-in models.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Seed of built-in weights and random inputs.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print one JSON object (the manifest) instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Runs `poolpipe profile`.
pub fn command(a: ProfileArgs) -> Result<()> {
    let ProfileArgs {
        model,
        out,
        device,
        class,
        classes,
        name,
        blocks,
        tolerance,
        batches,
        shares,
        warmup,
        iters,
        timing,
        precision,
        repartition,
        input_shape,
        size,
        seed,
        json,
    } = a;
    let opts = ProfileOptions {
        model,
        name,
        size,
        input_shape: input_shape.map(|s| s.0),
        seed,
        device,
        class,
        classes,
        out,
        blocks,
        tolerance,
        max_batch: batches.0,
        shares,
        warmup,
        iters,
        timing,
        precision,
        repartition,
        progress: true,
    };
    let report = profile(&opts)?;
    crate::commands::print_report(&report, json, render)
}

/// Batch sizes 1..B given as "1..B" or "B".
#[derive(Clone, Debug)]
pub struct BatchRange(pub usize);

impl std::str::FromStr for BatchRange {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("'{s}' is not a batch range like 1..8 (profiles have one column per batch size from 1)");
        let (start, end) = match s.split_once("..") {
            Some((a, b)) => (
                a.trim().parse::<usize>().map_err(|_| bad())?,
                b.trim_start_matches('=').trim().parse::<usize>().map_err(|_| bad())?,
            ),
            None => (1, s.trim().parse::<usize>().map_err(|_| bad())?),
        };
        if start != 1 || end == 0 {
            return Err(bad());
        }
        Ok(BatchRange(end))
    }
}
