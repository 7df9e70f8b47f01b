//! wgpu executor (in progress).
