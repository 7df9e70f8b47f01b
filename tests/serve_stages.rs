//! The serving data path on lavapipe: a model cut into two stages on two workers (each with
//! its own wgpu device), batches sent by a frontend over QUIC with mutual TLS along a reserved
//! route, the outputs back at the frontend equal to the whole model on one device.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use poolpipe::serve::ServeError;
use poolpipe::serve::wire::{from_wire, to_wire};
use poolpipe::serve::worker::{FRONTEND, StageRunner, Worker};
use poolpipe_engine::boundary::{Boundary, Precision};
use poolpipe_engine::gpu::{AdapterSelector, CompileOptions, CompiledModel, Device};
use poolpipe_engine::partition::{PartitionOptions, estimate_costs, partition};
use poolpipe_engine::{Rng, Tensor, models, optimize};
use poolpipe_transport::endpoint::{Node, recv};
use poolpipe_transport::frame::{BatchHeader, FrameLimits, RequestRef, RouteHop};
use poolpipe_transport::link::Link;
use poolpipe_transport::tls;
use std::sync::Arc;

fn device() -> Device {
    let sel: AdapterSelector = std::env::var("POOLPIPE_TEST_ADAPTER").unwrap_or_default().parse().unwrap();
    Device::open(&sel).unwrap_or_else(|e| panic!("the serving tests need a wgpu adapter (lavapipe): {e}"))
}

fn node(ca: &tls::Identity, name: &str) -> Node {
    Node::bind(([127, 0, 0, 1], 0).into(), &tls::issue(&ca.key_pem, name).unwrap(), &ca.cert_pem).unwrap()
}

/// Accepts connections on `node` and serves each with `worker`.
fn serve(node: Node, worker: std::sync::Arc<Worker>) {
    tokio::spawn(async move {
        while let Some(conn) = node.accept().await {
            tokio::spawn(worker.clone().serve(conn, FrameLimits::default()));
        }
    });
}

fn addr(n: &Node) -> SocketAddr {
    n.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_run_a_cut_model_and_the_frontend_gets_the_whole_models_outputs() {
    let model = Arc::new(models::builtin("resnet-mini", 32, 1).unwrap());
    let graph = optimize(&model.graph(1).unwrap()).unwrap();
    let split = partition(&graph, &[estimate_costs(&graph)], &PartitionOptions { blocks: 4, tolerance: 0.5 }).unwrap();
    let batch = 2;
    let x = Tensor::random(model.input_shapes(batch).unwrap().remove(0), &mut Rng::new(7), -1.0, 1.0);
    let want =
        CompiledModel::new(&device(), model.clone(), CompileOptions::default()).run(std::slice::from_ref(&x)).unwrap();

    let ca = tls::init_ca().unwrap();
    let (front, w1, w2) = (node(&ca, "frontend"), node(&ca, "worker-1"), node(&ca, "worker-2"));
    let first = StageRunner::new(&device(), &model, &split, 0..2, 1, 0, Precision::F16, 4).unwrap();
    let second = StageRunner::new(&device(), &model, &split, 2..4, 1, 1, Precision::F16, 4).unwrap();
    let to_w2 = HashMap::from([(2, Link::new(&w1, addr(&w2), "worker-2"))]);
    let to_front = HashMap::from([(FRONTEND, Link::new(&w2, addr(&front), "frontend"))]);
    serve(w1.clone(), Worker::new(1, vec![first], to_w2));
    serve(w2.clone(), Worker::new(2, vec![second], to_front));

    // The frontend sends three batches along the route worker-1 -> worker-2 -> frontend.
    let to_w1 = Link::new(&front, addr(&w1), "worker-1");
    let input = Boundary::from_tensor(&graph.value(graph.inputs()[0]).name, &x, Precision::F32);
    for b in 0..3u64 {
        let (tensors, payloads): (_, Vec<Bytes>) = to_wire(vec![input.clone()]);
        let header = BatchHeader {
            model: 1,
            batch: b,
            stage: 0,
            requests: vec![
                RequestRef { id: 100 + 2 * b, deadline_us: 1e9 },
                RequestRef { id: 101 + 2 * b, deadline_us: 1e9 },
            ],
            route: vec![RouteHop { stage: 1, worker: 2 }, RouteHop { stage: 2, worker: FRONTEND }],
            tensors,
        };
        to_w1.send(&header, &payloads).await.unwrap();
    }
    let conn = tokio::time::timeout(Duration::from_secs(60), front.accept()).await.unwrap().unwrap();
    let mut seen = vec![];
    for _ in 0..3 {
        let frame =
            tokio::time::timeout(Duration::from_secs(60), recv(&conn, &FrameLimits::default())).await.unwrap().unwrap();
        assert_eq!(frame.header.stage, 2, "results arrive as the stage after the last");
        assert!(frame.header.route.is_empty());
        let b = frame.header.batch;
        assert_eq!(frame.header.requests.iter().map(|r| r.id).collect::<Vec<_>>(), vec![100 + 2 * b, 101 + 2 * b]);
        let outs = from_wire(&frame).unwrap();
        let names: Vec<&str> = graph.outputs().iter().map(|&o| graph.value(o).name.as_str()).collect();
        for (want, name) in want.iter().zip(&names) {
            let got = outs
                .iter()
                .find(|t| t.name == *name)
                .unwrap_or_else(|| panic!("output {name} missing"))
                .to_tensor()
                .unwrap();
            let err = got.max_abs_diff(want) / want.max_abs().max(1.0);
            assert!(err <= 1e-2, "batch {b}, {name}: relative error {err} above the fp16 tolerance");
        }
        seen.push(b);
    }
    seen.sort();
    assert_eq!(seen, vec![0, 1, 2]);
}

#[tokio::test]
async fn a_batch_for_a_stage_the_worker_does_not_run_is_refused_with_its_id() {
    let model = Arc::new(models::builtin("resnet-mini", 32, 1).unwrap());
    let graph = optimize(&model.graph(1).unwrap()).unwrap();
    let split = partition(&graph, &[estimate_costs(&graph)], &PartitionOptions { blocks: 4, tolerance: 0.5 }).unwrap();
    let ca = tls::init_ca().unwrap();
    let (front, w1) = (node(&ca, "frontend"), node(&ca, "worker-1"));
    let first = StageRunner::new(&device(), &model, &split, 0..2, 1, 0, Precision::F16, 4).unwrap();
    let worker = Worker::new(1, vec![first], HashMap::from([(FRONTEND, Link::new(&w1, addr(&front), "frontend"))]));
    let x = Tensor::random(graph.value(graph.inputs()[0]).shape.clone(), &mut Rng::new(1), -1.0, 1.0);
    let (tensors, payloads) = to_wire(vec![Boundary::from_tensor("x", &x, Precision::F32)]);
    let frame = |model, stage, route: Vec<RouteHop>| poolpipe_transport::frame::Frame {
        header: BatchHeader { model, batch: 44, stage, requests: vec![], route, tensors: tensors.clone() },
        payloads: payloads.clone(),
    };
    let home = vec![RouteHop { stage: 2, worker: FRONTEND }];
    let e = worker.handle(frame(1, 1, home.clone())).await.unwrap_err();
    assert!(matches!(e, ServeError::NotAssigned { model: 1, stage: 1, batch: 44, .. }), "{e}");
    let e = worker.handle(frame(1, 0, vec![RouteHop { stage: 1, worker: 9 }])).await.unwrap_err();
    assert!(e.to_string().contains("unknown") && e.to_string().contains("44"), "{e}");
    let e = worker.handle(frame(1, 0, vec![])).await.unwrap_err();
    assert!(e.to_string().contains("route is empty"), "{e}");
    // A tensor the stage does not take: the engine's error, naming the batch.
    let e = worker.handle(frame(1, 0, home)).await.unwrap_err();
    assert!(matches!(e, ServeError::Engine { batch: 44, .. }), "{e}");
}
