//! Fleet and workload files (TOML).
//!
//! Fleet:
//! ```toml
//! bandwidth_gbps = 6            # effective NIC bandwidth per server
//! [[class]]
//! name = "L4"                   # as in the profile file names
//! count = 25                    # GPUs of this class
//! gpus_per_server = 1
//! shares = [1, 2, 3, 4]         # optional: shares the class may use (default: all profiled)
//! [[class]]
//! name = "P4"
//! count = 75
//! gpus_per_server = 1
//! ```
//!
//! Workload:
//! ```toml
//! reference_class = "L4"        # optional: default SLOs are 5x the batch-1 latency here
//! [[model]]
//! name = "fcn-d6_r101-d16_4xb2-40k_cityscapes-512x1024"
//! weight = 0.30
//! slo_ms = 33.3                 # optional
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{PlannerError, Result};
use crate::profiles::ModelProfile;

/// One GPU class of a fleet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuClass {
    /// Class name, as in the profile file names.
    pub name: String,
    /// Number of GPUs.
    pub count: u32,
    /// GPUs per server (they share the server's NIC).
    pub gpus_per_server: u32,
    /// Shares the class may use (1/k of a GPU); default: every share it has profiles for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shares: Option<Vec<usize>>,
}

/// A fleet: GPU classes and the network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fleet {
    /// Effective NIC bandwidth of a server, Gbit/s.
    pub bandwidth_gbps: f64,
    /// The classes.
    pub class: Vec<GpuClass>,
}

/// One model of a workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadModel {
    /// Model name, as in the profile file names.
    pub name: String,
    /// Share of the requests (weights need not sum to 1).
    pub weight: f64,
    /// SLO in milliseconds (default: the profile folder's slo-us.csv, else 5x the batch-1
    /// latency on the reference class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo_ms: Option<f64>,
}

/// A workload: the models served together and their weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Class whose batch-1 latency sets default SLOs (default: "L4").
    #[serde(default = "default_reference")]
    pub reference_class: String,
    /// The models.
    pub model: Vec<WorkloadModel>,
}

fn default_reference() -> String {
    "L4".into()
}

/// Factor of the default SLO over the batch-1 latency on the reference class.
pub const DEFAULT_SLO_FACTOR: u64 = 5;

fn config_err(what: &str, reason: impl Into<String>) -> PlannerError {
    PlannerError::Config { what: what.to_string(), reason: reason.into() }
}

fn read_toml<T: for<'de> Deserialize<'de>>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| PlannerError::Io { path: path.to_path_buf(), source })?;
    toml::from_str(&text).map_err(|e| config_err(&format!("{what} {}", path.display()), e.to_string()))
}

impl Fleet {
    /// Reads and checks a fleet file.
    pub fn load(path: &Path) -> Result<Fleet> {
        let f: Fleet = read_toml(path, "fleet")?;
        f.validate(&format!("fleet {}", path.display()))?;
        Ok(f)
    }

    /// Checks counts, bandwidth and names.
    pub fn validate(&self, what: &str) -> Result<()> {
        if !(self.bandwidth_gbps.is_finite() && self.bandwidth_gbps > 0.0) {
            return Err(config_err(
                what,
                format!("bandwidth_gbps = {} must be a positive number", self.bandwidth_gbps),
            ));
        }
        if self.class.is_empty() {
            return Err(config_err(what, "no [[class]] tables: a fleet needs at least one GPU class"));
        }
        for (i, c) in self.class.iter().enumerate() {
            if c.name.is_empty() || c.name.contains('-') {
                return Err(config_err(what, format!("class name '{}' must be non-empty and free of '-'", c.name)));
            }
            if self.class[..i].iter().any(|o| o.name == c.name) {
                return Err(config_err(what, format!("class '{}' is listed twice", c.name)));
            }
            if c.gpus_per_server == 0 {
                return Err(config_err(what, format!("class '{}': gpus_per_server must be at least 1", c.name)));
            }
            if let Some(s) = &c.shares
                && (s.is_empty() || s.iter().any(|&k| k == 0 || k > crate::profiles::MAX_SHARE))
            {
                return Err(config_err(
                    what,
                    format!("class '{}': shares must be numbers 1..=8, e.g. [1, 2, 3, 4]", c.name),
                ));
            }
        }
        Ok(())
    }

    /// Class names in file order.
    pub fn class_names(&self) -> Vec<String> {
        self.class.iter().map(|c| c.name.clone()).collect()
    }
}

impl Workload {
    /// Reads and checks a workload file.
    pub fn load(path: &Path) -> Result<Workload> {
        let w: Workload = read_toml(path, "workload")?;
        w.validate(&format!("workload {}", path.display()))?;
        Ok(w)
    }

    /// Checks names, weights and SLOs.
    pub fn validate(&self, what: &str) -> Result<()> {
        if self.model.is_empty() {
            return Err(config_err(what, "no [[model]] tables"));
        }
        for (i, m) in self.model.iter().enumerate() {
            if self.model[..i].iter().any(|o| o.name == m.name) {
                return Err(config_err(what, format!("model '{}' is listed twice", m.name)));
            }
            if !(m.weight.is_finite() && m.weight > 0.0) {
                return Err(config_err(what, format!("model '{}': weight {} must be positive", m.name, m.weight)));
            }
            if let Some(s) = m.slo_ms
                && !(s.is_finite() && s > 0.0)
            {
                return Err(config_err(what, format!("model '{}': slo_ms {s} must be positive", m.name)));
            }
        }
        Ok(())
    }

    /// Model names in file order.
    pub fn model_names(&self) -> Vec<String> {
        self.model.iter().map(|m| m.name.clone()).collect()
    }

    /// The SLO of each model in microseconds, with where it came from: `slo_ms` when given,
    /// else the profile folder's slo-us.csv, else 5x the whole-model batch-1 latency at share
    /// 1 on the reference class. `profiles` in the workload's order.
    pub fn slos_us(&self, profiles: &[ModelProfile]) -> Result<Vec<(u64, SloSource)>> {
        self.model
            .iter()
            .map(|m| {
                if let Some(ms) = m.slo_ms {
                    return Ok(((ms * 1000.0).round() as u64, SloSource::Given));
                }
                let p = profiles.iter().find(|p| p.name == m.name).ok_or_else(|| {
                    config_err(&format!("model '{}'", m.name), "has no profiles loaded (a bug in the caller)")
                })?;
                if let Some(us) = p.listed_slo_us {
                    return Ok((us, SloSource::Listed));
                }
                match p.whole_us(&self.reference_class, 1, 1) {
                    Some(us) => Ok((us * DEFAULT_SLO_FACTOR, SloSource::Reference)),
                    None => Err(config_err(
                        &format!("model '{}'", m.name),
                        format!(
                            "no SLO: give slo_ms, list it in slo-us.csv, or profile it on the reference class '{}' (set reference_class to a class of the fleet)",
                            self.reference_class
                        ),
                    )),
                }
            })
            .collect()
    }
}

/// Where a model's SLO came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SloSource {
    /// `slo_ms` in the workload file.
    Given,
    /// The profile folder's slo-us.csv.
    Listed,
    /// 5x the batch-1 latency on the reference class.
    Reference,
}
