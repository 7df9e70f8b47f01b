//! The engine's error type.

/// Everything that can go wrong in the engine. Each message names the graph, node, tensor or
/// device it is about and, where there is one, what to do.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A node of the graph is malformed: wrong inputs, mismatched shapes or an attribute value
    /// the engine does not support.
    #[error("node '{node}' ({op}): {reason}")]
    InvalidNode {
        /// Name of the node.
        node: String,
        /// Operation of the node.
        op: String,
        /// What is wrong and, where possible, what to do.
        reason: String,
    },
    /// The graph as a whole is malformed (unknown value, no outputs, bad node range, ...).
    #[error("graph '{graph}': {reason}")]
    InvalidGraph {
        /// Name of the graph.
        graph: String,
        /// What is wrong.
        reason: String,
    },
    /// A tensor was built from data whose length does not match its shape.
    #[error("tensor of shape {shape:?} needs {expected} values, got {got}")]
    TensorData {
        /// The shape asked for.
        shape: Vec<usize>,
        /// Elements the shape holds.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// A tensor holds values of another element type than the operation needs.
    #[error("tensor type: {reason}")]
    TensorType {
        /// What was asked and what the tensor holds.
        reason: String,
    },
    /// A model file could not be read or makes no sense as a CNN (corrupt, truncated, wrong
    /// input shape, missing external data, bad attribute).
    #[error("model '{model}': {reason}")]
    Model {
        /// The model file or name.
        model: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The model uses operations the engine does not support; every one is listed.
    #[error(
        "model '{model}' uses operations poolpipe does not support: {ops}; export the model without them or file an issue naming these ops"
    )]
    UnsupportedOps {
        /// The model file or name.
        model: String,
        /// Each unsupported op type with the nodes that use it.
        ops: String,
    },
    /// An input given to `run` does not match the graph.
    #[error("graph '{graph}', input '{input}': {reason}")]
    Input {
        /// Name of the graph.
        graph: String,
        /// Name of the input.
        input: String,
        /// What is wrong.
        reason: String,
    },
    /// The batch asked for is larger than the largest one a stage serves.
    #[error("graph '{graph}': batch {batch} exceeds the maximum of {max}; raise max_batch to at least {batch}")]
    BatchTooLarge {
        /// Name of the graph.
        graph: String,
        /// Batch asked for.
        batch: usize,
        /// Compiled maximum.
        max: usize,
    },
    /// No adapter at all: there is no GPU driver and no software Vulkan.
    #[error(
        "no GPU adapter found on any backend; on a CPU-only Debian machine install Mesa's software Vulkan driver (`apt-get install mesa-vulkan-drivers`), or check that your GPU's Vulkan/GL driver is installed"
    )]
    NoAdapter,
    /// The adapter selector matches none of the adapters present.
    #[error("no adapter matches '{selector}'; available: {available} (see `poolpipe devices`)")]
    AdapterNotFound {
        /// The selector as given.
        selector: String,
        /// The adapters there are, one per entry.
        available: String,
    },
    /// The adapter refused to give a device.
    #[error("requesting a device on adapter '{adapter}' failed: {reason}")]
    RequestDevice {
        /// Adapter name.
        adapter: String,
        /// Why.
        reason: String,
    },
    /// A tensor is larger than one buffer may be on this device.
    #[error(
        "node '{node}': tensor '{tensor}' needs {bytes} bytes, more than device '{device}' allows in one buffer ({limit} bytes); use a smaller batch or input size"
    )]
    TensorTooLarge {
        /// Node that produces or uses the tensor.
        node: String,
        /// Tensor name.
        tensor: String,
        /// Bytes needed.
        bytes: u64,
        /// Device name.
        device: String,
        /// The device's limit.
        limit: u64,
    },
    /// The device ran out of memory.
    #[error(
        "device '{device}' ran out of memory while allocating for {what}; use a smaller batch, a smaller block range, or a device with more memory"
    )]
    OutOfMemory {
        /// Device name.
        device: String,
        /// What was being allocated (node and tensor).
        what: String,
    },
    /// A boundary tensor (wire form between stages) does not match what the stage expects.
    #[error("boundary tensor '{tensor}': {reason}")]
    Boundary {
        /// Tensor name.
        tensor: String,
        /// What is wrong.
        reason: String,
    },
    /// Any other error reported by the GPU driver or wgpu.
    #[error("GPU error on device '{device}' while {context}: {message}")]
    Gpu {
        /// Device name.
        device: String,
        /// What the engine was doing.
        context: String,
        /// The driver's message.
        message: String,
    },
}

/// Shorthand for results of the engine.
pub type Result<T> = std::result::Result<T, EngineError>;
