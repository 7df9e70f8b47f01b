//! The WGSL kernel modules and a per-device cache of their compute pipelines.
//!
//! Each module is the prelude `shaders/common.wgsl` followed by one family file. Pipelines are
//! specialised by override constants only (activation, operation, workgroup size, mode).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A kernel family: one WGSL file of `shaders/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// conv.wgsl: conv2d, conv1x1, depthwise, conv_transpose, conv_direct,
    /// conv_transpose_direct, col2im, deform_conv.
    Conv,
    /// matmul.wgsl: matmul, pack_b.
    Matmul,
    /// elementwise.wgsl: binary, compare, binary_int, unary, unary_int, classify,
    /// select_words.
    Elementwise,
    /// pool.wgsl: pool, max_pool_indices, unpool_clear, unpool_scatter.
    Pool,
    /// reduce.wgsl: reduce, arg_reduce, softmax, layer_norm, cumulative, top_k.
    Reduce,
    /// norm.wgsl: batch_norm, lrn.
    Norm,
    /// layout.wgsl: strided_copy, pad.
    Layout,
    /// index.wgsl: gather, gather_elements, gather_nd, scatter_elements, scatter_nd,
    /// tensor_scatter, one_hot, trilu, reverse_sequence.
    Index,
    /// naive.wgsl: one-output-per-invocation baselines for benchmarks.
    Naive,
    /// convert.wgsl: fp16 packing of boundary tensors (unpack_f16, pack_f16), casts
    /// (cast_f2i, cast_i2i, cast_i2f, cast_f2f) and the rounding of float16, bfloat16,
    /// float8 and float4 values (round16).
    Convert,
    /// sample.wgsl: resample, resample_nearest (resize), grid_sample, roi_align.
    Sample,
    /// recurrent.wgsl: recurrent layers (lstm_cell, gru_reset, gru_cell, rnn_cell, pack_r,
    /// init_state, finish_state).
    Recurrent,
    /// quant.wgsl: quantize, dequantize (also of constants packed several values a word),
    /// range_partial and dynamic_qparams (DynamicQuantizeLinear), bit_cast.
    Quant,
    /// signal.wgsl: dft (DFT and STFT), det, linear_attention.
    Signal,
}

/// The prelude shared by every module.
pub const COMMON: &str = include_str!("../../../shaders/common.wgsl");

impl Family {
    /// Every family.
    pub const ALL: [Family; 14] = [
        Family::Conv,
        Family::Matmul,
        Family::Elementwise,
        Family::Pool,
        Family::Reduce,
        Family::Norm,
        Family::Layout,
        Family::Index,
        Family::Naive,
        Family::Convert,
        Family::Sample,
        Family::Recurrent,
        Family::Quant,
        Family::Signal,
    ];

    /// File name in `shaders/`.
    pub fn file(self) -> &'static str {
        match self {
            Family::Conv => "conv.wgsl",
            Family::Matmul => "matmul.wgsl",
            Family::Elementwise => "elementwise.wgsl",
            Family::Pool => "pool.wgsl",
            Family::Reduce => "reduce.wgsl",
            Family::Norm => "norm.wgsl",
            Family::Layout => "layout.wgsl",
            Family::Index => "index.wgsl",
            Family::Naive => "naive.wgsl",
            Family::Convert => "convert.wgsl",
            Family::Sample => "sample.wgsl",
            Family::Recurrent => "recurrent.wgsl",
            Family::Quant => "quant.wgsl",
            Family::Signal => "signal.wgsl",
        }
    }

    /// The family file's source (without the prelude).
    pub fn body(self) -> &'static str {
        match self {
            Family::Conv => include_str!("../../../shaders/conv.wgsl"),
            Family::Matmul => include_str!("../../../shaders/matmul.wgsl"),
            Family::Elementwise => include_str!("../../../shaders/elementwise.wgsl"),
            Family::Pool => include_str!("../../../shaders/pool.wgsl"),
            Family::Reduce => include_str!("../../../shaders/reduce.wgsl"),
            Family::Norm => include_str!("../../../shaders/norm.wgsl"),
            Family::Layout => include_str!("../../../shaders/layout.wgsl"),
            Family::Index => include_str!("../../../shaders/index.wgsl"),
            Family::Naive => include_str!("../../../shaders/naive.wgsl"),
            Family::Convert => include_str!("../../../shaders/convert.wgsl"),
            Family::Sample => include_str!("../../../shaders/sample.wgsl"),
            Family::Recurrent => include_str!("../../../shaders/recurrent.wgsl"),
            Family::Quant => include_str!("../../../shaders/quant.wgsl"),
            Family::Signal => include_str!("../../../shaders/signal.wgsl"),
        }
    }

    /// The module's full source: prelude, then the family file.
    pub fn source(self) -> String {
        format!("{COMMON}\n{}", self.body())
    }
}

/// A specialised kernel: family, entry point and override constants.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Kernel {
    /// The module.
    pub family: Family,
    /// Entry point.
    pub entry: &'static str,
    /// Override constants (name, value); all are u32 in the shaders.
    pub consts: Vec<(&'static str, u32)>,
}

impl Kernel {
    /// A kernel with the given entry point and constants.
    pub fn new(family: Family, entry: &'static str, consts: &[(&'static str, u32)]) -> Self {
        Kernel { family, entry, consts: consts.to_vec() }
    }
}

/// Compiled modules and pipelines of one device.
#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<Family, Arc<wgpu::ShaderModule>>>,
    pipelines: Mutex<HashMap<Kernel, Arc<wgpu::ComputePipeline>>>,
}

impl PipelineCache {
    /// The pipeline of a kernel, created on first use. Errors are caught by the caller's
    /// error scope.
    pub(crate) fn get(&self, device: &wgpu::Device, k: &Kernel) -> Arc<wgpu::ComputePipeline> {
        if let Some(p) = self.pipelines.lock().expect("pipeline cache poisoned").get(k) {
            return p.clone();
        }
        let module = {
            let mut modules = self.modules.lock().expect("module cache poisoned");
            modules
                .entry(k.family)
                .or_insert_with(|| {
                    Arc::new(device.create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(k.family.file()),
                        source: wgpu::ShaderSource::Wgsl(k.family.source().into()),
                    }))
                })
                .clone()
        };
        let consts: Vec<(&str, f64)> = k.consts.iter().map(|&(n, v)| (n, v as f64)).collect();
        let pipeline = Arc::new(device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(k.entry),
            layout: None,
            module: &module,
            entry_point: Some(k.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &consts,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        }));
        self.pipelines.lock().expect("pipeline cache poisoned").insert(k.clone(), pipeline.clone());
        pipeline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every module parses and validates with naga, and has the entry points the engine uses.
    #[test]
    fn every_wgsl_module_validates_with_naga() {
        let entries: &[(Family, &[&str])] = &[
            (
                Family::Conv,
                &[
                    "conv2d",
                    "conv1x1",
                    "depthwise",
                    "conv_transpose",
                    "conv_direct",
                    "conv_transpose_direct",
                    "col2im",
                    "deform_conv",
                ],
            ),
            (Family::Matmul, &["matmul", "pack_b"]),
            (
                Family::Elementwise,
                &["binary", "compare", "binary_int", "unary", "unary_int", "classify", "select_words"],
            ),
            (Family::Pool, &["pool", "max_pool_indices", "unpool_clear", "unpool_scatter"]),
            (Family::Reduce, &["reduce", "arg_reduce", "softmax", "layer_norm", "cumulative", "top_k"]),
            (Family::Norm, &["batch_norm", "lrn"]),
            (Family::Layout, &["strided_copy", "pad"]),
            (
                Family::Index,
                &[
                    "gather",
                    "gather_elements",
                    "gather_nd",
                    "scatter_elements",
                    "scatter_nd",
                    "tensor_scatter",
                    "one_hot",
                    "trilu",
                    "reverse_sequence",
                ],
            ),
            (Family::Naive, &["naive_conv2d", "naive_matmul"]),
            (Family::Convert, &["unpack_f16", "pack_f16", "cast_f2i", "cast_i2i", "cast_i2f", "cast_f2f", "round16"]),
            (Family::Sample, &["resample", "resample_nearest", "grid_sample", "roi_align"]),
            (
                Family::Recurrent,
                &["lstm_cell", "gru_reset", "gru_cell", "rnn_cell", "pack_r", "init_state", "finish_state"],
            ),
            (Family::Quant, &["quantize", "dequantize", "range_partial", "dynamic_qparams", "bit_cast"]),
            (Family::Signal, &["dft", "det", "linear_attention"]),
        ];
        assert_eq!(entries.len(), Family::ALL.len());
        for &(family, names) in entries {
            let src = family.source();
            let module = match naga::front::wgsl::parse_str(&src) {
                Ok(m) => m,
                Err(e) => panic!("{} does not parse:\n{}", family.file(), e.emit_to_string(&src)),
            };
            let mut v =
                naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all());
            if let Err(e) = v.validate(&module) {
                panic!("{} does not validate:\n{}", family.file(), e.emit_to_string(&src));
            }
            for name in names {
                assert!(
                    module.entry_points.iter().any(|e| e.name == *name),
                    "{} lacks entry point {name}",
                    family.file()
                );
            }
        }
    }

    /// Every .wgsl file in shaders/ is one of the families (or the prelude), so none escapes
    /// validation.
    #[test]
    fn every_shader_file_is_a_known_family() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shaders");
        for entry in std::fs::read_dir(dir).expect("shaders/ exists") {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".wgsl") && name != "common.wgsl" {
                assert!(Family::ALL.iter().any(|f| f.file() == name), "{name} is not a kernel family");
            }
        }
    }
}
