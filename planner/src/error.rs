//! The planner's error type.

use std::path::PathBuf;

/// Everything that can go wrong while reading planner inputs or planning. Each message names
/// the file, model or class concerned and what to do.
#[derive(Debug, thiserror::Error)]
pub enum PlannerError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A profile file needed for a model and class is missing.
    #[error(
        "no profile of model '{model}' on class '{class}' at share 1/{share}: {path} is missing; profile it with `poolpipe profile MODEL --class {class} --out DIR`, or remove the class or model"
    )]
    MissingProfile {
        /// Model name.
        model: String,
        /// Class name.
        class: String,
        /// Share k.
        share: usize,
        /// The file looked for.
        path: PathBuf,
    },
    /// A profile file is not in the format of ppipe-data/README.md.
    #[error("{path}, line {line}: {reason}")]
    BadProfile {
        /// The file.
        path: PathBuf,
        /// 1-based line number (0: the file as a whole).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The profiles of one model disagree on the number of blocks.
    #[error(
        "model '{model}': profiles disagree on the number of blocks: {details}; profile every class on the same partition"
    )]
    InconsistentBlocks {
        /// Model name.
        model: String,
        /// Each file with its block count.
        details: String,
    },
    /// A fleet, workload or option is invalid.
    #[error("{what}: {reason}")]
    Config {
        /// The file or option.
        what: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The solver failed or found nothing within its limits.
    #[error("solver: {reason}")]
    Solver {
        /// What happened and what to do.
        reason: String,
    },
    /// No model of the workload can meet its SLO on this fleet.
    #[error("no model of the workload can meet its SLO on this fleet: {details}")]
    NothingServable {
        /// Each model with why.
        details: String,
    },
    /// A plan broke one of its own invariants (a bug: please report it with the inputs).
    #[error("plan check failed: {reason}")]
    InvalidPlan {
        /// The broken invariant.
        reason: String,
    },
}

/// Shorthand for results of the planner.
pub type Result<T> = std::result::Result<T, PlannerError>;
