//! What the controller tells a worker about its stage (the `spec` of an `assign` control
//! message), and how a worker turns it into a compiled stage.
//!
//! The model itself does not travel: the worker loads it from the same source the controller
//! names (a built-in model, or an ONNX file at the same path on every machine) and checks its
//! fingerprint, so a worker with a different file refuses the assignment instead of computing
//! wrong answers.

use serde::{Deserialize, Serialize};

use std::sync::Arc;

use poolpipe_engine::Model;
use poolpipe_engine::partition::Partition;

/// Where a model comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSource {
    /// A built-in model name or an .onnx path.
    pub model: String,
    /// Frame size of built-in models.
    #[serde(default = "default_size")]
    pub size: usize,
    /// Seed of built-in weights.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Per-frame input shape of ONNX models with symbolic sizes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_shape: Option<Vec<usize>>,
}

fn default_size() -> usize {
    64
}

fn default_seed() -> u64 {
    1
}

impl ModelSource {
    /// Loads the model.
    pub fn load(&self) -> anyhow::Result<Arc<Model>> {
        Ok(Arc::new(crate::models::load_model(&self.model, self.size, self.seed, self.input_shape.as_deref())?))
    }
}

/// A node of the cluster others send batches to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// Worker id in routes ([`crate::serve::protocol::FRONTEND`] for the frontend).
    pub id: u32,
    /// Where it accepts batch streams.
    pub addr: String,
    /// Its certificate's name.
    pub name: String,
}

/// The `spec` of an `assign` message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// Plan generation: a worker answers batches of its current generation's stage only.
    pub generation: u64,
    /// Model name.
    pub name: String,
    /// Where the worker loads the model from.
    pub source: ModelSource,
    /// The model's blocks.
    pub partition: Partition,
    /// Fingerprint of the rewritten graph the partition was cut on.
    pub fingerprint: String,
    /// Largest batch the stage runs.
    pub max_batch: usize,
    /// Every node the worker may forward to.
    pub peers: Vec<Peer>,
}
