//! Block profiles in the ppipe-data format (`../shared/ppipe-data/README.md`), as published
//! or as written by `poolpipe profile`:
//!
//! - `block-latency/{model}-{class}-{k}.csv`: no header, row i = block i, column c = batch
//!   c + 1, integer microseconds of the block for the whole batch at share 1/k;
//! - `cut-bytes/{model}.csv`: one value a line, the bytes per request crossing the cut after
//!   block i (fp16), M - 1 lines for M blocks;
//! - `slo-us.csv` (optional, at the top of the folder): `model,slo_us` with a header.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{PlannerError, Result};

/// The largest share k a profile file may have (k copies on a GPU).
pub const MAX_SHARE: usize = 8;

/// Latencies of one model on one class at one share: `us[block][batch - 1]`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShareProfile {
    /// Share k (1/k of a GPU).
    pub share: usize,
    /// Microseconds per block and batch.
    pub us: Vec<Vec<u64>>,
}

impl ShareProfile {
    /// Largest batch profiled.
    pub fn max_batch(&self) -> usize {
        self.us.first().map_or(0, Vec::len)
    }

    /// Latency of blocks `range` at `batch` (sum of the blocks), when profiled.
    pub fn range_us(&self, range: std::ops::Range<usize>, batch: usize) -> Option<u64> {
        if batch == 0 || batch > self.max_batch() || range.end > self.us.len() {
            return None;
        }
        Some(self.us[range].iter().map(|row| row[batch - 1]).sum())
    }
}

/// Everything known about one model: its cut sizes and its latencies per class and share.
#[derive(Clone, Debug, Serialize)]
pub struct ModelProfile {
    /// Model name (as in the file names).
    pub name: String,
    /// Number of blocks M.
    pub blocks: usize,
    /// Bytes per request crossing the cut after each block but the last (M - 1 values).
    pub cut_bytes: Vec<u64>,
    /// Profiles per class, each with the shares found (k = 1 always).
    pub classes: BTreeMap<String, Vec<ShareProfile>>,
    /// SLO from the folder's slo-us.csv, when listed there.
    pub listed_slo_us: Option<u64>,
}

impl ModelProfile {
    /// The profile of a class at a share, when there is one.
    pub fn share(&self, class: &str, k: usize) -> Option<&ShareProfile> {
        self.classes.get(class)?.iter().find(|s| s.share == k)
    }

    /// The shares profiled on a class, ascending.
    pub fn shares(&self, class: &str) -> Vec<usize> {
        self.classes.get(class).map(|v| v.iter().map(|s| s.share).collect()).unwrap_or_default()
    }

    /// Whole-model latency (sum of all blocks) on a class at a share and batch.
    pub fn whole_us(&self, class: &str, k: usize, batch: usize) -> Option<u64> {
        self.share(class, k)?.range_us(0..self.blocks, batch)
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| PlannerError::Io { path: path.to_path_buf(), source })
}

/// Parses a CSV of non-negative integers with no header: rows of equal length.
fn parse_table(path: &Path, text: &str) -> Result<Vec<Vec<u64>>> {
    let mut rows: Vec<Vec<u64>> = vec![];
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = |reason: String| PlannerError::BadProfile { path: path.to_path_buf(), line: i + 1, reason };
        let row: Vec<u64> = line
            .split(',')
            .map(|x| x.trim().parse::<u64>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad(format!("'{line}' is not comma-separated integer microseconds")))?;
        if let Some(first) = rows.first()
            && first.len() != row.len()
        {
            return Err(bad(format!("{} values, the first row has {}", row.len(), first.len())));
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(PlannerError::BadProfile { path: path.to_path_buf(), line: 0, reason: "empty file".into() });
    }
    Ok(rows)
}

/// Reads `slo-us.csv` of a profile folder (model -> SLO in microseconds); empty when absent.
pub fn read_slos(dir: &Path) -> Result<BTreeMap<String, u64>> {
    let path = dir.join("slo-us.csv");
    let mut out = BTreeMap::new();
    if !path.is_file() {
        return Ok(out);
    }
    let text = read(&path)?;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.starts_with("model")) {
            continue;
        }
        let bad = || PlannerError::BadProfile {
            path: path.clone(),
            line: i + 1,
            reason: format!("'{line}' is not 'model,slo_us' with a positive integer"),
        };
        let (m, v) = line.split_once(',').ok_or_else(bad)?;
        let v: u64 = v.trim().parse().map_err(|_| bad())?;
        if v == 0 {
            return Err(bad());
        }
        out.insert(m.trim().to_string(), v);
    }
    Ok(out)
}

/// Loads the profiles of `models` on `classes` from a folder. Every (model, class) needs its
/// k = 1 file; other shares are taken where present (a class may have fewer, like P4). Every
/// file of a model must have as many rows as the model has blocks (cut-bytes lines + 1); the
/// batch columns are what the file has (8, 4, 2, 2 for k = 1..4 as published).
pub fn load(dir: &Path, models: &[String], classes: &[String]) -> Result<Vec<ModelProfile>> {
    let slos = read_slos(dir)?;
    let mut out = vec![];
    for model in models {
        let cut_path = dir.join("cut-bytes").join(format!("{model}.csv"));
        if !cut_path.is_file() {
            return Err(PlannerError::Config {
                what: format!("model '{model}'"),
                reason: format!(
                    "{} is missing: the profile folder has no cut sizes for this model (check the name against the file names)",
                    cut_path.display()
                ),
            });
        }
        let cut_text = read(&cut_path)?;
        // An empty file is a one-block model (no cuts).
        let cut_bytes: Vec<u64> = if cut_text.trim().is_empty() {
            vec![]
        } else {
            let t = parse_table(&cut_path, &cut_text)?;
            if t[0].len() != 1 {
                return Err(PlannerError::BadProfile {
                    path: cut_path,
                    line: 1,
                    reason: "one value a line expected (bytes crossing each cut)".into(),
                });
            }
            t.into_iter().map(|r| r[0]).collect()
        };
        let blocks = cut_bytes.len() + 1;
        let mut per_class = BTreeMap::new();
        let mut mismatches: Vec<String> = vec![];
        for class in classes {
            let mut shares = vec![];
            for k in 1..=MAX_SHARE {
                let path = dir.join("block-latency").join(format!("{model}-{class}-{k}.csv"));
                if !path.is_file() {
                    if k == 1 {
                        return Err(PlannerError::MissingProfile {
                            model: model.clone(),
                            class: class.clone(),
                            share: 1,
                            path,
                        });
                    }
                    continue;
                }
                let us = parse_table(&path, &read(&path)?)?;
                if us.len() != blocks {
                    mismatches.push(format!("{} has {} rows", path.display(), us.len()));
                    continue;
                }
                if us.iter().flatten().any(|&x| x == 0) {
                    return Err(PlannerError::BadProfile {
                        path,
                        line: 0,
                        reason: "a latency of 0 us; profiles hold positive microseconds".into(),
                    });
                }
                shares.push(ShareProfile { share: k, us });
            }
            per_class.insert(class.clone(), shares);
        }
        if !mismatches.is_empty() {
            mismatches.insert(0, format!("{} has {} cuts ({blocks} blocks)", cut_path.display(), blocks - 1));
            return Err(PlannerError::InconsistentBlocks { model: model.clone(), details: mismatches.join("; ") });
        }
        out.push(ModelProfile {
            name: model.clone(),
            blocks,
            cut_bytes,
            classes: per_class,
            listed_slo_us: slos.get(model).copied(),
        });
    }
    Ok(out)
}

/// The models that have a cut-bytes file in a profile folder, sorted.
pub fn models_in(dir: &Path) -> Result<Vec<String>> {
    let cut = dir.join("cut-bytes");
    let entries = std::fs::read_dir(&cut).map_err(|source| PlannerError::Io { path: cut.clone(), source })?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".csv").map(str::to_string))
        .collect();
    names.sort();
    Ok(names)
}

/// Where a profile folder keeps a file (for messages).
pub fn block_file(dir: &Path, model: &str, class: &str, k: usize) -> PathBuf {
    dir.join("block-latency").join(format!("{model}-{class}-{k}.csv"))
}
