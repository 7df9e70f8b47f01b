//! Resizing and sampling at computed coordinates (Resize in every mode, GridSample, RoiAlign)
//! on the GPU against the CPU reference, at odd sizes and batches 1 and 3; and small ONNX
//! models of the family (AffineGrid feeding GridSample, RoiAlign and Resize with every input
//! from the data) against onnxruntime.

use std::process::Command;
use std::sync::Arc;

use super::*;

/// A resize of `input` to `sizes` whose scales are `scales` where given (an axis's length is
/// then floor(input * scale)), else output / input.
fn resize_attrs(
    mode: ResizeMode,
    coord: CoordMode,
    input: &[usize],
    sizes: &[usize],
    scales: Option<&[f64]>,
) -> ResizeAttrs {
    let mut a = ResizeAttrs::to_sizes(mode, coord, input, sizes);
    if let Some(s) = scales {
        a.scales = s.to_vec();
    }
    if coord == CoordMode::TfCropAndResize {
        // A region reaching past the input on both sides of the last axis.
        let r = input.len();
        a.roi[r - 2] = (0.15, 0.8);
        a.roi[r - 1] = (-0.2, 1.1);
        a.extrapolation = -2.5;
    }
    a
}

/// Checks one resize of `[n, dims...]` at batches 1 and 3.
fn check_resize(name: &str, dims: &[usize], attrs_of: impl Fn(&[usize]) -> ResizeAttrs, dtype: DType, tol: f32) {
    let graph = |n: usize| {
        let shape: Vec<usize> = [vec![n], dims.to_vec()].concat();
        build(name, |g| {
            let x = g.input_typed("x", dtype, &shape);
            Ok(vec![g.add("resize", Op::Resize(attrs_of(&shape)), vec![x])?])
        })
    };
    check(graph, BATCHES, tol, name.len() as u64);
}

/// Spatial sizes of a resize of the last two axes by (scale_h, scale_w).
fn scaled(shape: &[usize], s: [f64; 2]) -> (Vec<usize>, Vec<f64>) {
    let r = shape.len();
    let mut sizes = shape.to_vec();
    let mut scales = vec![1.0; r];
    for k in 0..2 {
        scales[r - 2 + k] = s[k];
        sizes[r - 2 + k] = (shape[r - 2 + k] as f64 * s[k]).floor() as usize;
    }
    (sizes, scales)
}

#[test]
fn resize_every_mode_and_coordinate_mode_up_and_down() {
    use CoordMode::*;
    let coords = [HalfPixel, HalfPixelSymmetric, PytorchHalfPixel, AlignCorners, Asymmetric, TfCropAndResize];
    let nearest = [
        NearestMode::RoundPreferFloor,
        NearestMode::RoundPreferCeil,
        NearestMode::Floor,
        NearestMode::Ceil,
        NearestMode::Legacy,
    ];
    // (input h, w; scales h, w): growing and shrinking axes, fractional lengths, odd sizes.
    let cases: [([usize; 2], [f64; 2]); 3] = [([5, 7], [1.6, 0.45]), ([6, 3], [0.5, 2.5]), ([9, 4], [0.75, 1.0 / 3.0])];
    for (ci, (hw, s)) in cases.into_iter().enumerate() {
        for (k, &coord) in coords.iter().enumerate() {
            let modes = [
                ResizeMode::Nearest(nearest[(k + ci) % nearest.len()]),
                ResizeMode::Linear,
                ResizeMode::Cubic { a: if k % 2 == 0 { -0.75 } else { -0.5 } },
            ];
            for (mi, mode) in modes.into_iter().enumerate() {
                let exclude_outside = (k + mi) % 2 == 1;
                let name = format!("resize_{ci}_{coord:?}_{mi}");
                check_resize(
                    &name,
                    &[2, hw[0], hw[1]],
                    |shape| {
                        let (sizes, scales) = scaled(shape, s);
                        ResizeAttrs { exclude_outside, ..resize_attrs(mode, coord, shape, &sizes, Some(&scales)) }
                    },
                    DType::F32,
                    TOL,
                );
            }
        }
        // tf_half_pixel_for_nn (nearest only), with sizes instead of scales.
        let name = format!("resize_{ci}_tf_nn");
        check_resize(
            &name,
            &[2, hw[0], hw[1]],
            |shape| {
                let (sizes, _) = scaled(shape, s);
                resize_attrs(ResizeMode::Nearest(NearestMode::RoundPreferCeil), TfHalfPixelForNn, shape, &sizes, None)
            },
            DType::F32,
            0.0,
        );
    }
}

#[test]
fn resize_antialias_when_shrinking() {
    use CoordMode::*;
    // Strong and mild shrinking, and one growing axis (where antialias changes nothing).
    let cases: [([usize; 2], [f64; 2]); 3] = [([11, 9], [0.3, 0.55]), ([7, 13], [0.8, 0.25]), ([9, 5], [0.4, 1.8])];
    for (ci, (hw, s)) in cases.into_iter().enumerate() {
        for (k, coord) in
            [HalfPixel, Asymmetric, AlignCorners, PytorchHalfPixel, HalfPixelSymmetric].into_iter().enumerate()
        {
            for (mi, mode) in [ResizeMode::Linear, ResizeMode::Cubic { a: -0.75 }].into_iter().enumerate() {
                let exclude_outside = (k + mi + ci) % 2 == 0;
                let name = format!("resize_aa_{ci}_{coord:?}_{mi}");
                check_resize(
                    &name,
                    &[3, hw[0], hw[1]],
                    |shape| {
                        let (sizes, scales) = scaled(shape, s);
                        ResizeAttrs {
                            antialias: true,
                            exclude_outside,
                            ..resize_attrs(mode, coord, shape, &sizes, Some(&scales))
                        }
                    },
                    DType::F32,
                    TOL,
                );
            }
        }
    }
}

#[test]
fn resize_3d_and_5d_inputs_and_the_batch_axis() {
    let modes =
        [ResizeMode::Nearest(NearestMode::RoundPreferFloor), ResizeMode::Linear, ResizeMode::Cubic { a: -0.75 }];
    for (mi, mode) in modes.into_iter().enumerate() {
        // 3-D [n, 5, 7]: both axes after the batch.
        check_resize(
            &format!("resize3d_{mi}"),
            &[5, 7],
            |shape| resize_attrs(mode, CoordMode::HalfPixel, shape, &[shape[0], 3, 11], None),
            DType::F32,
            TOL,
        );
        // 5-D [n, 2, 3, 4, 5]: three axes, growing and shrinking, antialiased.
        check_resize(
            &format!("resize5d_{mi}"),
            &[2, 3, 4, 5],
            |shape| {
                let sizes = [shape[0], 2, 5, 3, 9];
                ResizeAttrs { antialias: mi > 0, ..resize_attrs(mode, CoordMode::AlignCorners, shape, &sizes, None) }
            },
            DType::F32,
            TOL,
        );
        // The batch axis resized with the others (it is an ordinary axis).
        check_resize(
            &format!("resize_batch_{mi}"),
            &[3, 4],
            |shape| resize_attrs(mode, CoordMode::Asymmetric, shape, &[shape[0] + 2, 3, 7], None),
            DType::F32,
            TOL,
        );
    }
}

#[test]
fn resize_nearest_moves_any_type_and_16_bit_floats_round() {
    for coord in [CoordMode::HalfPixel, CoordMode::TfCropAndResize] {
        check_resize(
            &format!("resize_int_{coord:?}"),
            &[3, 5, 4],
            |shape| {
                let (sizes, scales) = scaled(shape, [1.4, 0.6]);
                resize_attrs(ResizeMode::Nearest(NearestMode::Ceil), coord, shape, &sizes, Some(&scales))
            },
            DType::I64,
            0.0,
        );
    }
    check_resize(
        "resize_f16",
        &[2, 5, 6],
        |shape| resize_attrs(ResizeMode::Cubic { a: -0.75 }, CoordMode::HalfPixel, shape, &[shape[0], 2, 9, 4], None),
        DType::F16,
        TOL_F16,
    );
}

#[test]
fn grid_sample_every_mode_and_padding_with_grids_from_the_data() {
    // (input spatial dims, output spatial dims) for 1, 2 and 3 spatial axes.
    let shapes: [(Vec<usize>, Vec<usize>); 3] =
        [(vec![7], vec![5]), (vec![5, 7], vec![3, 4]), (vec![3, 4, 5], vec![2, 3, 3])];
    for (r, (dims, out)) in shapes.iter().enumerate() {
        for mode in [GridMode::Nearest, GridMode::Linear, GridMode::Cubic] {
            for padding in [GridPadding::Zeros, GridPadding::Border, GridPadding::Reflection] {
                for align_corners in [false, true] {
                    let attrs = GridSampleAttrs { mode, padding, align_corners };
                    let name = format!("grid{}_{mode:?}_{padding:?}_{align_corners}", r + 1);
                    let graph = |n: usize| {
                        build(&name, |g| {
                            let x = g.input("x", &[vec![n, 2], dims.clone()].concat());
                            let raw = g.input("grid", &[vec![n], out.clone(), vec![dims.len()]].concat());
                            // Positions in [-1.7, 1.7): a third of them outside the input.
                            let spread = floats(g, "spread", vec![1], vec![1.7]);
                            let grid = g.binary("spread", BinaryOp::Mul, raw, spread)?;
                            Ok(vec![g.add("grid_sample", Op::GridSample(attrs), vec![x, grid])?])
                        })
                    };
                    check(graph, BATCHES, TOL, (r * 100) as u64);
                }
            }
        }
    }
}

#[test]
fn roi_align_with_regions_and_batch_indices_from_the_data() {
    let (c, h, w, regions) = (3, 9, 11, 5);
    let mut case = 0;
    for max in [false, true] {
        for half_pixel in [false, true] {
            for (sampling_ratio, output) in [(0, [3, 2]), (2, [2, 3]), (0, [1, 1])] {
                case += 1;
                let attrs = RoiAlignAttrs { max, output, sampling_ratio, spatial_scale: 0.5, half_pixel };
                let graph = |n: usize| {
                    build(&format!("roi_align{case}"), |g| {
                        let x = g.input("x", &[n, c, h, w]);
                        // Regions in image coordinates (twice the input's, spatial_scale 0.5):
                        // corners from [-1, 1) spread over and a little past the input, some
                        // reversed (malformed).
                        let raw = g.input("raw", &[regions, 4]);
                        let span = floats(
                            g,
                            "span",
                            vec![4],
                            vec![0.6 * w as f32, 0.6 * h as f32, 0.7 * w as f32, 0.7 * h as f32],
                        );
                        let centre = floats(
                            g,
                            "centre",
                            vec![4],
                            vec![0.6 * w as f32, 0.6 * h as f32, 1.4 * w as f32, 1.4 * h as f32],
                        );
                        let rois = g.binary("span", BinaryOp::Mul, raw, span)?;
                        let rois = g.binary("centre", BinaryOp::Add, rois, centre)?;
                        // Batch indices 0..=2 from the data, taken modulo the batch.
                        let idx = g.input_typed("idx", DType::I64, &[regions]);
                        let batch = int64s(g, "batch", vec![1], vec![n as i64]);
                        let idx = g.binary("mod", BinaryOp::Mod { fmod: false }, idx, batch)?;
                        Ok(vec![g.add("roi_align", Op::RoiAlign(attrs), vec![x, rois, idx])?])
                    })
                };
                check(graph, BATCHES, TOL, case);
            }
        }
    }
}

/// Writes ONNX models of the family with every input a graph input (AffineGrid's theta,
/// GridSample's grid, RoiAlign's regions and batch indices), their inputs and onnxruntime's
/// outputs at batches 1 and 3: `NAME.bB.onnx`, `NAME.bB.inK.npy`, `NAME.bB.outK.npy`.
const ORT_MODELS: &str = r#"
import sys, numpy as np, onnx, onnxruntime as ort
from onnx import helper, TensorProto as T
out = sys.argv[1]
rng = np.random.default_rng(7)
F, I = T.FLOAT, T.INT64

def save(name, b, nodes, inputs, outputs, opset, inits=()):
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info(n, t, v.shape) for n, t, v in inputs],
                          [helper.make_tensor_value_info(o, F, None) for o in outputs], list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10
    path = f"{out}/{name}.b{b}"
    onnx.save(m, path + ".onnx")
    feeds = {n: v for n, _, v in inputs}
    for k, (_, _, v) in enumerate(inputs):
        np.save(f"{path}.in{k}.npy", v)
    for k, y in enumerate(ort.InferenceSession(m.SerializeToString()).run(None, feeds)):
        np.save(f"{path}.out{k}.npy", y)

def ints(name, v):
    return helper.make_tensor(name, I, [len(v)], v)

def floats(name, v):
    return helper.make_tensor(name, F, [len(v)], v)

for b in (1, 3):
    # A spatial transformer: AffineGrid (2-D) feeding GridSample, both outputs compared.
    x = rng.standard_normal((b, 3, 7, 9)).astype(np.float32)
    theta = (np.array([[1.1, 0.2, 0.1], [-0.3, 0.9, -0.2]]) + 0.2 * rng.standard_normal((b, 2, 3))).astype(np.float32)
    save("stn2d", b, [helper.make_node("AffineGrid", ["theta", "size"], ["grid"], align_corners=0),
                      helper.make_node("GridSample", ["x", "grid"], ["y"], mode="linear", padding_mode="zeros")],
         [("x", F, x), ("theta", F, theta)], ["grid", "y"], 20, [ints("size", [b, 3, 5, 6])])
    # 3-D, align_corners, cubic sampling with reflection.
    x = rng.standard_normal((b, 2, 4, 5, 6)).astype(np.float32)
    theta = (np.eye(3, 4) + 0.25 * rng.standard_normal((b, 3, 4))).astype(np.float32)
    save("stn3d", b, [helper.make_node("AffineGrid", ["theta", "size"], ["grid"], align_corners=1),
                      helper.make_node("GridSample", ["x", "grid"], ["y"], mode="linear", padding_mode="reflection",
                                       align_corners=1)],
         [("x", F, x), ("theta", F, theta)], ["grid", "y"], 20, [ints("size", [b, 2, 3, 4, 5])])
    # GridSample with the grid from the data (opset 16 names), bicubic with border.
    x = rng.standard_normal((b, 2, 6, 5)).astype(np.float32)
    grid = (1.3 * rng.uniform(-1, 1, (b, 4, 3, 2))).astype(np.float32)
    save("grid_bicubic", b, [helper.make_node("GridSample", ["x", "grid"], ["y"], mode="bicubic", padding_mode="border")],
         [("x", F, x), ("grid", F, grid)], ["y"], 16)
    # RoiAlign with regions and batch indices from the data.
    x = rng.standard_normal((b, 3, 10, 12)).astype(np.float32)
    xs, ys = np.sort(rng.uniform(0, 24, (6, 2)), axis=1), np.sort(rng.uniform(0, 20, (6, 2)), axis=1)
    rois = np.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], axis=1).astype(np.float32)
    idx = rng.integers(0, b, 6).astype(np.int64)
    for mode, coord in (("avg", "half_pixel"), ("max", "output_half_pixel")):
        save(f"roi_align_{mode}", b, [helper.make_node("RoiAlign", ["x", "rois", "idx"], ["y"], mode=mode,
                                                       output_height=3, output_width=4, sampling_ratio=0,
                                                       spatial_scale=0.5, coordinate_transformation_mode=coord)],
             [("x", F, x), ("rois", F, rois), ("idx", I, idx)], ["y"], 16)
    # Resize: cubic antialias shrinking, linear tf_crop_and_resize with axes, nearest legacy (opset 10).
    x = rng.standard_normal((b, 2, 11, 13)).astype(np.float32)
    save("resize_cubic_aa", b, [helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="cubic", antialias=1)],
         [("x", F, x)], ["y"], 19, [floats("scales", [1, 1, 0.45, 0.6])])
    save("resize_crop", b, [helper.make_node("Resize", ["x", "roi", "", "sizes"], ["y"], mode="linear", axes=[3, 2],
                                             coordinate_transformation_mode="tf_crop_and_resize",
                                             extrapolation_value=0.5)],
         [("x", F, x)], ["y"], 18, [floats("roi", [-0.1, 0.2, 0.9, 0.7]), ints("sizes", [9, 5])])
    save("resize_nearest10", b, [helper.make_node("Resize", ["x", "scales"], ["y"], mode="nearest")],
         [("x", F, x)], ["y"], 10, [floats("scales", [1, 1, 0.6, 1.5])])
    save("resize_tf_nn11", b, [helper.make_node("Resize", ["x", "roi", "scales"], ["y"], mode="nearest",
                                                coordinate_transformation_mode="tf_half_pixel_for_nn",
                                                nearest_mode="round_prefer_ceil")],
         [("x", F, x)], ["y"], 11, [floats("roi", []), floats("scales", [1, 1, 1.7, 0.7])])
    save("resize_not_smaller", b, [helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="cubic",
                                                    keep_aspect_ratio_policy="not_smaller", exclude_outside=1,
                                                    axes=[2, 3], coordinate_transformation_mode="half_pixel_symmetric")],
         [("x", F, x)], ["y"], 19, [ints("sizes", [7, 6])])
    save("upsample7", b, [helper.make_node("Upsample", ["x"], ["y"], mode="linear", scales=[1.0, 1.0, 1.5, 2.0])],
         [("x", F, x)], ["y"], 7)
    save("upsample9", b, [helper.make_node("Upsample", ["x", "scales"], ["y"], mode="nearest")],
         [("x", F, x)], ["y"], 9, [floats("scales", [1, 1, 2.5, 1.4])])
    save("center_crop_pad", b, [helper.make_node("CenterCropPad", ["x", "shape"], ["y"], axes=[-1, 1])],
         [("x", F, x)], ["y"], 18, [ints("shape", [8, 5])])
"#;

#[test]
fn sampling_models_with_inputs_from_the_data_match_onnxruntime() {
    let dir = std::env::temp_dir().join(format!("poolpipe-sample-ort-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new("python3")
        .arg("-c")
        .arg(ORT_MODELS)
        .arg(&dir)
        .output()
        .expect("python3 runs (scripts/setup.sh installs onnx and onnxruntime)");
    assert!(out.status.success(), "the model generator failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let names = [
        "stn2d",
        "stn3d",
        "grid_bicubic",
        "roi_align_avg",
        "roi_align_max",
        "resize_cubic_aa",
        "resize_crop",
        "resize_nearest10",
        "resize_tf_nn11",
        "resize_not_smaller",
        "upsample7",
        "upsample9",
        "center_crop_pad",
    ];
    for name in names {
        for b in [1, 3] {
            let model = onnx::load(&dir.join(format!("{name}.b{b}.onnx")), &Default::default())
                .unwrap_or_else(|e| panic!("{name} batch {b}: import failed: {e}"));
            let read = |what: &str, k: usize| npy::read(&dir.join(format!("{name}.b{b}.{what}{k}.npy")));
            let inputs: Vec<Tensor> = (0..).map_while(|k| read("in", k).ok()).collect();
            let model = Arc::new(model);
            let want_ref = reference::run_model(&model, &inputs).unwrap_or_else(|e| panic!("{name} reference: {e}"));
            let mut compiled = gpu::CompiledModel::new(&device(), model, gpu::CompileOptions::default());
            let got = compiled.run(&inputs).unwrap_or_else(|e| panic!("{name} batch {b}: {e}"));
            for (k, (g, r)) in got.iter().zip(&want_ref).enumerate() {
                let want = read("out", k).unwrap();
                let scale = want.max_abs().max(1.0);
                let err = g.max_abs_diff(&want) / scale;
                assert!(err <= 1e-4, "{name} batch {b} output {k}: GPU differs from onnxruntime by {err:e}");
                let err = r.max_abs_diff(&want) / scale;
                assert!(err <= 1e-4, "{name} batch {b} output {k}: the reference differs from onnxruntime by {err:e}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
