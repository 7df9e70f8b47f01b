//! Whole graphs on the GPU: the built-in models against the CPU reference (run on the graph
//! before rewrites, so batch-norm folding and activation fusion are checked too), stages cut
//! at every node boundary, several devices in one process, and per-sample results that do
//! not depend on the batch a model's graph was specialised for.
//!
//! Tolerance: relative error (see common::rel_err) at most 1e-3 for whole models (dozens of
//! layers of f32 accumulated in a different order), 1e-4 per stage composition.

mod common;

use common::{check, device, inputs, rel_err};
use poolpipe_engine::gpu::{CompileOptions, Device};
use poolpipe_engine::{Rng, Tensor, models, reference};

#[test]
fn builtin_models_match_the_reference_at_batch_1_and_4() {
    for (name, _) in models::BUILTIN {
        let model = models::builtin(name, 32, 5).unwrap();
        check(|b| model.graph(b).unwrap(), &[1, 4], 1e-3, 7);
    }
}

#[test]
fn unknown_builtin_model_lists_the_known_ones() {
    let e = models::builtin("vgg-huge", 32, 1).unwrap_err().to_string();
    assert!(e.contains("resnet-mini") && e.contains("vgg-huge"), "{e}");
}

/// Running nodes [0, c) then [c, n) as two stages gives the whole graph's output, for every
/// cut c; the second stage takes the first stage's outputs by name.
#[test]
fn every_cut_of_a_model_composes_to_the_whole() {
    let g = models::builtin("mobilenet-mini", 24, 3).unwrap().graph(2).unwrap();
    let dev = device();
    let opts = CompileOptions::default();
    let mut rng = Rng::new(1);
    let ins = inputs(&g, &mut rng);
    let whole = reference::run(&g, &ins).unwrap();
    let n = g.nodes().len();
    for cut in (1..n).step_by(3) {
        let first = g.slice_nodes(0..cut).unwrap();
        let second = g.slice_nodes(cut..n).unwrap();
        let mid = dev.compile(&first, &opts).unwrap().run(&ins).unwrap();
        // Feed the second stage's inputs by name from the graph input and the first stage.
        let feed: Vec<_> = second
            .inputs()
            .iter()
            .map(|&i| {
                let name = &second.value(i).name;
                if let Some(k) = first.outputs().iter().position(|&o| &first.value(o).name == name) {
                    mid[k].clone()
                } else {
                    let k = g.inputs().iter().position(|&o| &g.value(o).name == name).expect("graph input");
                    ins[k].clone()
                }
            })
            .collect();
        let out = dev.compile(&second, &opts).unwrap().run(&feed).unwrap();
        let e = rel_err(&out[0], &whole[0]);
        assert!(e <= 1e-4, "cut {cut}: relative error {e}");
    }
}

/// Two devices on the same adapter in one process, each with its own compiled graph, give the
/// same results (later issues run one pipeline stage per device).
#[test]
fn several_devices_in_one_process() {
    let g = models::builtin("resnet-mini", 32, 9).unwrap().graph(3).unwrap();
    let d1 = Device::open(&Default::default()).unwrap();
    let d2 = Device::open(&Default::default()).unwrap();
    let opts = CompileOptions::default();
    let mut c1 = d1.compile(&g, &opts).unwrap();
    let mut c2 = d2.compile(&g, &opts).unwrap();
    let mut rng = Rng::new(4);
    let ins = inputs(&g, &mut rng);
    let t = std::thread::spawn(move || c2.run(&ins).unwrap());
    let mut rng = Rng::new(4);
    let a = c1.run(&inputs(&g, &mut rng)).unwrap();
    let b = t.join().unwrap();
    assert_eq!(a, b);
}

/// The graphs of one model at batches 1 to 5 (each compiled for its own batch) give
/// per-sample results that do not depend on the batch, and a compiled graph run twice gives
/// the same results (its buffers are reused).
#[test]
fn results_do_not_depend_on_the_batch() {
    let model = models::builtin("segnet-mini", 16, 2).unwrap();
    let g5 = model.graph(5).unwrap();
    let mut c5 = device().compile(&g5, &CompileOptions::default()).unwrap();
    let mut rng = Rng::new(8);
    let all = inputs(&g5, &mut rng).remove(0);
    let full = c5.run(std::slice::from_ref(&all)).unwrap().remove(0);
    assert_eq!(full.shape()[0], 5);
    assert_eq!(c5.run(std::slice::from_ref(&all)).unwrap()[0], full, "a second run differs");
    let per = full.len() / 5;
    for b in 1..=5 {
        let g = model.graph(b).unwrap();
        let mut c = device().compile(&g, &CompileOptions::default()).unwrap();
        let part = Tensor::new([vec![b], all.shape()[1..].to_vec()].concat(), all.data()[..b * all.len() / 5].to_vec())
            .unwrap();
        let out = c.run(&[part]).unwrap().remove(0);
        assert_eq!(out.data(), &full.data()[..b * per], "batch {b}");
    }
}
