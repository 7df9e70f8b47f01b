//! Indexing, scatters, scans and TopK on the GPU against the CPU reference: indices and
//! updates computed from the data (graph inputs), negative indices, duplicate targets under
//! every scatter reduction, odd sizes (rows longer than a workgroup), batch 1 and 3.

use super::*;

const REDUCTIONS: [ScatterReduction; 5] = [
    ScatterReduction::None,
    ScatterReduction::Add,
    ScatterReduction::Mul,
    ScatterReduction::Max,
    ScatterReduction::Min,
];

/// int64 indices of `shape` computed from the data: three int64 inputs (0..=2 each) read as
/// base-3 digits (0..=26), modulo `len`, then minus `len` where a fourth input is odd when
/// `negative` (so about a third count from the end).
fn data_indices(g: &mut GraphBuilder, name: &str, shape: &[usize], len: usize, negative: bool) -> Result<ValueId> {
    let digit = |g: &mut GraphBuilder, k: &str| g.input_typed(&format!("{name}_{k}"), DType::I64, shape);
    let (a, b, c) = (digit(g, "a"), digit(g, "b"), digit(g, "c"));
    let three = int64s(g, &format!("{name}_3"), vec![1], vec![3]);
    let nine = int64s(g, &format!("{name}_9"), vec![1], vec![9]);
    let b3 = g.binary(&format!("{name}_b3"), BinaryOp::Mul, b, three)?;
    let c9 = g.binary(&format!("{name}_c9"), BinaryOp::Mul, c, nine)?;
    let ab = g.binary(&format!("{name}_ab"), BinaryOp::Add, a, b3)?;
    let abc = g.binary(&format!("{name}_abc"), BinaryOp::Add, ab, c9)?;
    let l = int64s(g, &format!("{name}_len"), vec![1], vec![len as i64]);
    let m = g.binary(&format!("{name}_mod"), BinaryOp::Mod { fmod: false }, abc, l)?;
    if !negative {
        return Ok(m);
    }
    let d = digit(g, "d");
    let two = int64s(g, &format!("{name}_2"), vec![1], vec![2]);
    let odd = g.binary(&format!("{name}_odd"), BinaryOp::Mod { fmod: false }, d, two)?;
    let back = g.binary(&format!("{name}_back"), BinaryOp::Mul, odd, l)?;
    g.binary(&format!("{name}_neg"), BinaryOp::Sub, m, back)
}

/// Index tuples [rows, lens.len()] whose component u lies in 0..lens[u] (negative when
/// `negative`), computed from the data.
fn data_tuples(g: &mut GraphBuilder, name: &str, rows: usize, lens: &[usize], negative: bool) -> Result<ValueId> {
    let parts = lens
        .iter()
        .enumerate()
        .map(|(u, &len)| data_indices(g, &format!("{name}{u}"), &[rows, 1], len, negative))
        .collect::<Result<Vec<_>>>()?;
    if parts.len() == 1 {
        return Ok(parts[0]);
    }
    g.add(&format!("{name}_tuples"), Op::Concat { axis: 1 }, parts)
}

/// `k` distinct positions in 0..len (as a column [k, 1], negative ones counting from the end
/// when `negative`), computed from the data: TopK's indices of a float input.
fn distinct_indices(g: &mut GraphBuilder, name: &str, len: usize, k: usize, negative: bool) -> Result<ValueId> {
    let x = g.input(&format!("{name}_x"), &[len]);
    let top = g.add_multi(&format!("{name}_topk"), Op::TopKStatic { axis: 0, k, largest: true }, vec![x])?;
    let col = g.add(&format!("{name}_col"), Op::Reshape { shape: vec![k, 1] }, vec![top[1]])?;
    if !negative {
        return Ok(col);
    }
    let l = int64s(g, &format!("{name}_len"), vec![1], vec![len as i64]);
    g.binary(&format!("{name}_neg"), BinaryOp::Sub, col, l)
}

#[test]
fn gather_elements_and_gather_nd_with_computed_indices() {
    let graph = |n: usize| {
        build("gathers", |g| {
            let data = g.input("data", &[n, 5, 7]);
            let ints = g.input_typed("ints", DType::I64, &[n, 5, 7]);
            let i1 = data_indices(g, "i1", &[n, 4, 7], 5, true)?;
            let i2 = data_indices(g, "i2", &[n, 3, 9], 7, true)?;
            let i0 = data_indices(g, "i0", &[4, 5, 6], n, true)?;
            let k = int64s(g, "k", vec![1, 2, 3], vec![-1, 0, 6, 2, -7, 3]);
            let mut outs = vec![
                g.add("ge1", Op::GatherElements { axis: 1 }, vec![data, i1])?,
                g.add("ge2", Op::GatherElements { axis: 2 }, vec![data, i2])?,
                g.add("ge0", Op::GatherElements { axis: 0 }, vec![data, i0])?,
                g.add("ge_int", Op::GatherElements { axis: 1 }, vec![ints, i1])?,
                g.add("ge_const", Op::GatherElements { axis: 2 }, vec![data, k])?,
            ];
            // Slices [4, 7] by (sample, row) tuples; single elements by full tuples.
            let t2 = data_tuples(g, "t2", 4, &[n, 5], true)?;
            outs.push(g.add("gnd_slices", Op::GatherNd { batch_dims: 0 }, vec![data, t2])?);
            let t3 = data_tuples(g, "t3", 9, &[n, 5, 7], false)?;
            outs.push(g.add("gnd_elements", Op::GatherNd { batch_dims: 0 }, vec![ints, t3])?);
            // Per sample: rows [n, 3, 1] -> [n, 3, 7]; per sample and row: columns -> [n, 5, 2].
            let b1 = data_indices(g, "b1", &[n, 3, 1], 5, true)?;
            outs.push(g.add("gnd_batch1", Op::GatherNd { batch_dims: 1 }, vec![data, b1])?);
            let b2 = data_indices(g, "b2", &[n, 5, 2, 1], 7, true)?;
            outs.push(g.add("gnd_batch2", Op::GatherNd { batch_dims: 2 }, vec![data, b2])?);
            Ok(outs)
        })
    };
    check(graph, BATCHES, 0.0, 40);
}

#[test]
fn scatter_elements_every_reduction_with_duplicate_targets() {
    for (case, r) in REDUCTIONS.into_iter().enumerate() {
        let graph = |n: usize| {
            build(&format!("scatter_elements_{}", r.name()), |g| {
                let data = g.input("data", &[n, 5, 7]);
                let op = |axis| Op::ScatterElements { axis, reduction: r };
                let mut outs = vec![];
                // Along the rows (4 updates into 5 rows), the columns (9 into 7) and the batch.
                for (axis, shape, len) in [(1, [n, 4, 7], 5), (2, [n, 3, 9], 7), (0, [4, 2, 7], n)] {
                    let idx = data_indices(g, &format!("i{axis}"), &shape, len, true)?;
                    let upd = g.input(&format!("u{axis}"), &shape);
                    outs.push(g.add(&format!("scatter{axis}"), op(axis), vec![data, idx, upd])?);
                }
                // Integers, exact; int8 products wrap (20 updates of up to 2 into 2 columns).
                let ints = g.input_typed("ints", DType::I32, &[n, 5, 7]);
                let idx = data_indices(g, "ii", &[n, 5, 7], 7, false)?;
                let upd = g.input_typed("iu", DType::I32, &[n, 5, 7]);
                outs.push(g.add("scatter_int", op(2), vec![ints, idx, upd])?);
                let small = g.input_typed("small", DType::I8, &[n, 3, 2]);
                let idx = data_indices(g, "si", &[n, 3, 20], 2, true)?;
                let upd = g.input_typed("su", DType::I8, &[n, 3, 20]);
                outs.push(g.add("scatter_int8", op(2), vec![small, idx, upd])?);
                Ok(outs)
            })
        };
        check(graph, BATCHES, TOL, 41 + case as u64);
    }
}

#[test]
fn scatter_elements_on_float16_rounds_its_sums() {
    let graph = |n: usize| {
        build("scatter_f16", |g| {
            let data = g.input_typed("data", DType::F16, &[n, 3, 33]);
            let idx = data_indices(g, "i", &[n, 3, 40], 33, true)?;
            let upd = g.input_typed("upd", DType::F16, &[n, 3, 40]);
            let op = Op::ScatterElements { axis: 2, reduction: ScatterReduction::Add };
            Ok(vec![g.add("scatter", op, vec![data, idx, upd])?])
        })
    };
    check(graph, BATCHES, TOL_F16, 47);
    let out = run_gpu(&graph(1), 48);
    assert!(out[0].data().iter().all(|&v| round_f16(v) == v), "sums are rounded to fp16");
}

#[test]
fn scatter_nd_slices_and_elements_every_reduction() {
    for (case, r) in REDUCTIONS.into_iter().enumerate() {
        let graph = |n: usize| {
            build(&format!("scatter_nd_{}", r.name()), |g| {
                let data = g.input("data", &[n, 5, 7]);
                let ints = g.input_typed("ints", DType::I64, &[n, 5, 7]);
                let op = Op::ScatterNd { reduction: r };
                // Replacing needs distinct targets (ONNX leaves duplicates undefined); the
                // reductions get duplicates.
                let distinct = r == ScatterReduction::None;
                let (samples, rows, cols) = if distinct {
                    let s = distinct_indices(g, "s", n, n, true)?;
                    let r0 = data_indices(g, "r0", &[4, 1], n, true)?;
                    let r1 = distinct_indices(g, "r1", 5, 4, true)?;
                    let rows = g.add("rows", Op::Concat { axis: 1 }, vec![r0, r1])?;
                    let c0 = data_tuples(g, "c0", 5, &[n, 5], false)?;
                    let c1 = distinct_indices(g, "c1", 7, 5, false)?;
                    let cols = g.add("cols", Op::Concat { axis: 1 }, vec![c0, c1])?;
                    (s, rows, cols)
                } else {
                    let s = data_tuples(g, "s", 6, &[n], true)?;
                    let rows = data_tuples(g, "rows", 9, &[n, 5], true)?;
                    let cols = data_tuples(g, "cols", 30, &[n, 5, 7], true)?;
                    (s, rows, cols)
                };
                let (ns, nr, nc) = (g.shape(samples)[0], g.shape(rows)[0], g.shape(cols)[0]);
                let us = g.input("us", &[ns, 5, 7]);
                let ur = g.input("ur", &[nr, 7]);
                let uc = g.input_typed("uc", DType::I64, &[nc]);
                // Constant tuples: distinct ones are scattered all at once, repeated ones in
                // order.
                let distinct = int64s(g, "distinct", vec![3, 2], vec![0, 1, 0, -1, 0, 2]);
                let repeated = int64s(g, "repeated", vec![3, 2], vec![0, 1, -(n as i64), -4, 0, 3]);
                let uk = g.input("uk", &[3, 7]);
                Ok(vec![
                    g.add("samples", op.clone(), vec![data, samples, us])?,
                    g.add("rows", op.clone(), vec![data, rows, ur])?,
                    g.add("elements", op.clone(), vec![ints, cols, uc])?,
                    g.add("distinct", op.clone(), vec![data, distinct, uk])?,
                    g.add("repeated", op, vec![data, repeated, uk])?,
                ])
            })
        };
        check(graph, BATCHES, TOL, 50 + case as u64);
    }
}

#[test]
fn tensor_scatter_linear_and_circular_with_computed_write_indices() {
    for (case, (circular, writes)) in [(false, 0), (false, 1), (true, 1), (true, 2)].into_iter().enumerate() {
        let graph = |n: usize| {
            build("tensor_scatter", |g| {
                let past = g.input("past", &[n, 2, 9, 3]);
                let mut outs = vec![];
                for (axis, ushape, room) in [(2, [n, 2, 4, 3], 6), (3, [n, 2, 9, 2], 2), (1, [n, 1, 9, 3], 2)] {
                    let upd = g.input(&format!("u{axis}"), &ushape);
                    let mut ins = vec![past, upd];
                    match writes {
                        // Linear: positions that fit; circular: anything, negative too.
                        1 => ins.push(data_indices(g, &format!("w{axis}"), &[n], room, false)?),
                        2 => ins.push(data_indices(g, &format!("w{axis}"), &[n], 27, true)?),
                        _ => {}
                    }
                    outs.push(g.add(&format!("ts{axis}"), Op::TensorScatter { axis, circular }, ins)?);
                }
                Ok(outs)
            })
        };
        check(graph, BATCHES, 0.0, 60 + case as u64);
    }
}

#[test]
fn one_hot_with_computed_indices_and_values() {
    let graph = |n: usize| {
        build("one_hot", |g| {
            // -4..=4 for depth 3: in range, counting back, and out of range on both sides.
            let i = data_indices(g, "i", &[n, 4, 3], 9, false)?;
            let four = int64s(g, "four", vec![1], vec![4]);
            let idx = g.binary("shift", BinaryOp::Sub, i, four)?;
            let values = g.input("values", &[2]);
            let ivalues = g.input_typed("ivalues", DType::I32, &[2]);
            // Float indices, truncated toward zero: idx + x * 0.9.
            let x = g.input("x", &[n, 4, 3]);
            let nine = floats(g, "nine", vec![1], vec![0.9]);
            let frac = g.binary("frac", BinaryOp::Mul, x, nine)?;
            let fidx = g.add("fidx", Op::Cast { to: DType::F32 }, vec![idx])?;
            let fidx = g.binary("fsum", BinaryOp::Add, fidx, frac)?;
            let oh = |axis, depth| Op::OneHot { axis, depth };
            Ok(vec![
                g.add("oh_last", oh(3, 3), vec![idx, values])?,
                g.add("oh_first", oh(0, 5), vec![idx, values])?,
                g.add("oh_mid", oh(2, 3), vec![idx, ivalues])?,
                g.add("oh_float", oh(1, 4), vec![fidx, values])?,
            ])
        })
    };
    check(graph, BATCHES, 0.0, 70);
}

#[test]
fn trilu_and_reverse_sequence() {
    let graph = |n: usize| {
        build("trilu_reverse", |g| {
            let x = g.input("x", &[n, 3, 5, 6]);
            let ints = g.input_typed("ints", DType::I64, &[n, 6, 4]);
            let mut outs = vec![];
            for (j, k) in [-7i64, -2, 0, 1, 3, 9].into_iter().enumerate() {
                outs.push(g.add(&format!("triu{j}"), Op::Trilu { upper: true, k }, vec![x])?);
                outs.push(g.add(&format!("tril{j}"), Op::Trilu { upper: false, k }, vec![ints])?);
            }
            // Batch axis 0, time axis 1 with lengths from the data; the transposed layout with
            // constant lengths; a time axis after inner dimensions.
            let s = g.input("s", &[n, 6, 3]);
            let lens = data_indices(g, "lens", &[n], 7, false)?;
            outs.push(g.add("rev", Op::ReverseSequence { batch_axis: 0, time_axis: 1 }, vec![s, lens])?);
            let t = g.input("t", &[5, n, 2]);
            let clens = int64s(g, "clens", vec![n], (0..n as i64).map(|b| (2 * b + 5) % 6).collect());
            outs.push(g.add("rev_t", Op::ReverseSequence { batch_axis: 1, time_axis: 0 }, vec![t, clens])?);
            let u = g.input_typed("u", DType::I64, &[n, 2, 7]);
            let ulens = data_indices(g, "ulens", &[n], 8, false)?;
            outs.push(g.add("rev_inner", Op::ReverseSequence { batch_axis: 0, time_axis: 2 }, vec![u, ulens])?);
            Ok(outs)
        })
    };
    check(graph, BATCHES, 0.0, 71);
}

#[test]
fn cumsum_cumprod_exclusive_reverse_on_every_axis() {
    let mut case = 0u64;
    for kind in [CumulativeKind::Sum, CumulativeKind::Prod] {
        for (exclusive, reverse) in [(false, false), (true, false), (false, true), (true, true)] {
            let graph = |n: usize| {
                build(&format!("{}_{exclusive}_{reverse}", kind.name()), |g| {
                    let scan = |axis| Op::Cumulative { kind, axis, exclusive, reverse };
                    // Rows of 3 (axis 1), of 150 (longer than a workgroup: chunks) and the batch.
                    let x = g.input("x", &[n, 3, 150]);
                    // Products of values near 1 stay in range.
                    let one = floats(g, "one", vec![1], vec![1.0]);
                    let quarter = floats(g, "quarter", vec![1], vec![0.25]);
                    let small = g.binary("small", BinaryOp::Mul, x, quarter)?;
                    let near1 = g.binary("near1", BinaryOp::Add, small, one)?;
                    let xs = if kind == CumulativeKind::Prod { near1 } else { x };
                    let mut outs = vec![
                        g.add("axis2", scan(2), vec![xs])?,
                        g.add("axis1", scan(1), vec![xs])?,
                        g.add("axis0", scan(0), vec![xs])?,
                    ];
                    // Integers are exact: int32 products and int8 sums wrap, int64 stays in
                    // the int32 range the device holds.
                    let i32s = g.input_typed("i32s", DType::I32, &[n, 2, 70]);
                    outs.push(g.add("int32", scan(2), vec![i32s])?);
                    let i8s = g.input_typed("i8s", DType::I8, &[n, 300]);
                    outs.push(g.add("int8", scan(1), vec![i8s])?);
                    let i64s = g.input_typed("i64s", DType::I64, &[n, 7, 5]);
                    outs.push(g.add("int64", scan(2), vec![i64s])?);
                    Ok(outs)
                })
            };
            check(graph, BATCHES, TOL, 80 + case);
            let half = |n: usize| {
                build(&format!("{}_f16", kind.name()), |g| {
                    let h = g.input_typed("h", DType::F16, &[n, 9]);
                    Ok(vec![g.add("f16", Op::Cumulative { kind, axis: 1, exclusive, reverse }, vec![h])?])
                })
            };
            check(half, BATCHES, TOL_F16, 90 + case);
            case += 1;
        }
    }
}

#[test]
fn top_k_on_the_device_breaks_ties_by_index() {
    let graph = |n: usize| {
        build("top_k", |g| {
            let topk = |axis, k, largest| Op::TopKStatic { axis, k, largest };
            let x = g.input("x", &[n, 3, 151]);
            let ints = g.input_typed("ints", DType::I64, &[n, 70]); // 0..=2: ties everywhere
            let h = g.input_typed("h", DType::F16, &[n, 5, 4]);
            let sq = g.unary("sqrt", x, Activation::Sqrt)?; // NaN for negative values
            let mut outs = vec![];
            let cases = [
                ("k1", x, topk(2, 1, true)),
                ("k7", x, topk(2, 7, false)),
                ("all", x, topk(2, 151, true)),
                ("rows", x, topk(1, 2, false)),
                ("batch", x, topk(0, n, true)),
                ("ties", ints, topk(1, 70, true)),
                ("ties_small", ints, topk(1, 33, false)),
                ("nan_large", sq, topk(2, 40, true)),
                ("nan_small", sq, topk(2, 151, false)),
                ("f16", h, topk(1, 3, true)),
            ];
            for (name, v, op) in cases {
                outs.extend(g.add_multi(name, op, vec![v])?);
            }
            Ok(outs)
        })
    };
    let g = graph(1);
    assert!(g.nodes().iter().all(|n| !n.op.is_host()), "TopK with a constant k needs no host step");
    check(graph, BATCHES, 0.0, 100);
}

#[test]
fn top_k_of_a_detection_head_row() {
    // One row of 2,000 scores, the best 300 (a detection head's shape, scaled down).
    let graph = |n: usize| {
        build("top_k_head", |g| {
            let scores = g.input("scores", &[n, 2000]);
            g.add_multi("topk", Op::TopKStatic { axis: 1, k: 300, largest: true }, vec![scores])
        })
    };
    check(graph, &[1], 0.0, 101);
}
