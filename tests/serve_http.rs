//! The KServe v2 HTTP API over a backend that doubles its input: every endpoint, JSON and
//! binary tensors, and the refusals (unknown model, wrong shape, oversized body, not ready).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use poolpipe::serve::frontend::http::{Backend, HttpOptions, ModelMeta, TensorMeta, router};
use poolpipe::serve::frontend::kserve::{ApiError, InputTensor, OutputTensor};
use serde_json::{Value, json};
use tower::ServiceExt;

#[derive(Clone)]
struct Doubler {
    ready: Arc<AtomicBool>,
}

impl Backend for Doubler {
    fn models(&self) -> Vec<ModelMeta> {
        vec![ModelMeta {
            name: "double".into(),
            inputs: vec![TensorMeta { name: "frames".into(), shape: vec![2, 2] }],
            outputs: vec![
                TensorMeta { name: "twice".into(), shape: vec![2, 2] },
                TensorMeta { name: "sum".into(), shape: vec![1] },
            ],
        }]
    }
    fn ready(&self, _: &str) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
    async fn infer(&self, _: &str, inputs: Vec<InputTensor>) -> Result<Vec<OutputTensor>, ApiError> {
        let x = &inputs[0];
        let n = x.shape[0];
        if n == 3 {
            return Err(ApiError { status: 503, message: "three is a crowd".into(), retry_after_s: Some(7) });
        }
        let sums = x.data.chunks(4).map(|c| c.iter().sum()).collect();
        Ok(vec![
            OutputTensor {
                name: "twice".into(),
                shape: x.shape.clone(),
                data: x.data.iter().map(|v| v * 2.0).collect(),
            },
            OutputTensor { name: "sum".into(), shape: vec![n, 1], data: sums },
        ])
    }
}

fn app(ready: bool) -> (axum::Router, Arc<AtomicBool>) {
    let flag = Arc::new(AtomicBool::new(ready));
    (router(Doubler { ready: flag.clone() }, HttpOptions { max_body: 4096, ..HttpOptions::default() }), flag)
}

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    (parts.status, parts.headers, to_bytes(body, 1 << 20).await.unwrap().to_vec())
}

async fn get(app: &axum::Router, path: &str) -> (StatusCode, Value) {
    let (s, _, b) = call(app, Request::get(path).body(Body::empty()).unwrap()).await;
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

async fn post_json(app: &axum::Router, path: &str, v: Value) -> (StatusCode, Value) {
    let req = Request::post(path).header("content-type", "application/json").body(Body::from(v.to_string())).unwrap();
    let (s, _, b) = call(app, req).await;
    (s, serde_json::from_slice(&b).unwrap_or_else(|_| json!(String::from_utf8_lossy(&b))))
}

#[tokio::test]
async fn health_and_metadata() {
    let (app, flag) = app(true);
    assert_eq!(get(&app, "/v2/health/live").await.0, StatusCode::OK);
    assert_eq!(get(&app, "/v2/health/ready").await.0, StatusCode::OK);
    let (s, v) = get(&app, "/v2").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["name"], "poolpipe");
    assert_eq!(v["extensions"], json!(["binary_tensor_data"]));
    let (s, v) = get(&app, "/v2/models/double").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["inputs"][0], json!({"name": "frames", "datatype": "FP32", "shape": [-1, 2, 2]}));
    assert_eq!(v["outputs"].as_array().unwrap().len(), 2);
    assert_eq!(get(&app, "/v2/models/double/versions/1").await.0, StatusCode::OK);
    assert_eq!(get(&app, "/v2/models/double/ready").await.0, StatusCode::OK);
    let (s, v) = get(&app, "/v2/models/triple").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(v["error"].as_str().unwrap().contains("unknown model 'triple'; this server has: double"), "{v}");
    flag.store(false, Ordering::SeqCst);
    assert_eq!(get(&app, "/v2/health/ready").await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(get(&app, "/v2/models/double/ready").await.0, StatusCode::SERVICE_UNAVAILABLE);
    let (s, v) = post_json(
        &app,
        "/v2/models/double/infer",
        json!({"inputs": [{"name": "frames", "shape": [1, 2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}]}),
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(get(&app, "/v1/nothing").await.0, StatusCode::NOT_FOUND);
    // A refusal that knows when to try again says so in Retry-After.
    flag.store(true, Ordering::SeqCst);
    let body = json!({"inputs": [{"name": "frames", "shape": [3, 2, 2], "datatype": "FP32", "data": vec![0.0; 12]}]});
    let req = Request::post("/v2/models/double/infer")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let (s, headers, b) = call(&app, req).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{}", String::from_utf8_lossy(&b));
    assert_eq!(headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("7"));
    assert!(String::from_utf8_lossy(&b).contains("three is a crowd"));
}

#[tokio::test]
async fn inference_with_json_and_binary_tensors() {
    let (app, _) = app(true);
    let (s, v) = post_json(
        &app,
        "/v2/models/double/infer",
        json!({"id": "a1", "inputs": [{"name": "frames", "shape": [2, 2, 2], "datatype": "FP32", "data": [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]}]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["model_name"], "double");
    assert_eq!(v["id"], "a1");
    assert_eq!(v["outputs"][0]["data"], json!([2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0]));
    assert_eq!(v["outputs"][1], json!({"name": "sum", "shape": [2, 1], "datatype": "FP32", "data": [10.0, 26.0]}));
    // Binary in, binary out for one output.
    let header = json!({
        "inputs": [{"name": "frames", "shape": [1, 2, 2], "datatype": "FP32", "parameters": {"binary_data_size": 16}}],
        "outputs": [{"name": "sum", "parameters": {"binary_data": true}}]
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    for x in [0.5f32, 1.5, 2.5, 3.5] {
        body.extend(x.to_le_bytes());
    }
    let req = Request::post("/v2/models/double/versions/1/infer")
        .header("Inference-Header-Content-Length", header.len())
        .body(Body::from(body))
        .unwrap();
    let (s, h, b) = call(&app, req).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let n: usize = h["inference-header-content-length"].to_str().unwrap().parse().unwrap();
    let v: Value = serde_json::from_slice(&b[..n]).unwrap();
    assert_eq!(v["outputs"][0]["parameters"]["binary_data_size"], 4);
    assert_eq!(&b[n..], 8.0f32.to_le_bytes());
    // Metrics count both, by status.
    let (s, _, m) = call(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    let m = String::from_utf8(m).unwrap();
    assert!(m.contains("poolpipe_requests_total{model=\"double\",status=\"200\"} 2"), "{m}");
    assert!(m.contains("poolpipe_request_seconds_count{model=\"double\"} 2"), "{m}");
}

#[tokio::test]
async fn non_finite_inputs_are_refused_unless_allowed() {
    let (app, _) = app(true);
    // A JSON number beyond f32.
    let json_inf =
        json!({"inputs": [{"name": "frames", "shape": [1, 2, 2], "datatype": "FP32", "data": [1, 2, 1e39, 4]}]});
    let (s, v) = post_json(&app, "/v2/models/double/infer", json_inf.clone()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(e.contains("input 'frames': element 2 is inf") && e.contains("reject_non_finite"), "{e}");
    // A binary NaN.
    let header = json!({"inputs": [{"name": "frames", "shape": [1, 2, 2], "datatype": "FP32", "parameters": {"binary_data_size": 16}}]})
        .to_string();
    let mut body = header.clone().into_bytes();
    for x in [0.5f32, f32::NAN, 2.5, 3.5] {
        body.extend(x.to_le_bytes());
    }
    let req = || {
        Request::post("/v2/models/double/infer")
            .header("Inference-Header-Content-Length", header.len())
            .body(Body::from(body.clone()))
            .unwrap()
    };
    let (s, _, b) = call(&app, req()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&b).contains("element 1 is NaN"), "{}", String::from_utf8_lossy(&b));
    // Allowed, they reach the model.
    let open = router(
        Doubler { ready: Arc::new(AtomicBool::new(true)) },
        HttpOptions { reject_non_finite: false, ..HttpOptions::default() },
    );
    let (s, _) = post_json(&open, "/v2/models/double/infer", json_inf).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = call(&open, req()).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn made_up_model_names_share_one_metrics_label() {
    let (app, _) = app(true);
    for i in 0..5000 {
        let (s, _) = post_json(&app, &format!("/v2/models/nope-{i}/infer"), json!({"inputs": []})).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    let (_, _, m) = call(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    let m = String::from_utf8(m).unwrap();
    assert!(m.contains("poolpipe_requests_total{model=\"(unknown)\",status=\"404\"} 5000"), "{m}");
    assert!(!m.contains("nope-"), "no label per made-up name");
    assert!(m.len() < 16 * 1024, "the metrics page stays small: {} bytes", m.len());
}

#[tokio::test]
async fn bad_requests_get_4xx_with_a_clear_message() {
    let (app, _) = app(true);
    let infer = |v: Value| {
        let app = app.clone();
        async move { post_json(&app, "/v2/models/double/infer", v).await }
    };
    let t = |shape: Value, data: Value| json!({"inputs": [{"name": "frames", "shape": shape, "datatype": "FP32", "data": data}]});
    let (s, v) = infer(t(json!([1, 3, 3]), json!(vec![0; 9]))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("it takes [N, 2, 2]"), "{v}");
    let (s, v) =
        infer(json!({"inputs": [{"name": "pixels", "shape": [1, 2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}]}))
            .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("needs input 'frames'"), "{v}");
    let (s, v) = infer(t(json!([1, 2, 2]), json!([1, 2, 3]))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("3 elements"), "{v}");
    let (s, v) = post_json(&app, "/v2/models/nope/infer", t(json!([1, 2, 2]), json!([1, 2, 3, 4]))).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) =
        infer(json!({"inputs": [{"name": "frames", "shape": [1, 2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}],
                              "outputs": [{"name": "boxes"}]}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("no output 'boxes'"), "{v}");
    let big =
        json!({"inputs": [{"name": "frames", "shape": [1000, 2, 2], "datatype": "FP32", "data": vec![1.5; 4000]}]});
    let (s, v) = infer(big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(v["error"].as_str().unwrap().contains("at most 4096 bytes"), "{v}");
    let req = Request::post("/v2/models/double/infer")
        .header("Inference-Header-Content-Length", "lots")
        .body(Body::from("{}"))
        .unwrap();
    let (s, _, b) = call(&app, req).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&b));
}

/// One model taking a 3 x 2 x 2 frame and giving the mean of each channel.
struct Pixels;

impl Backend for Pixels {
    fn models(&self) -> Vec<ModelMeta> {
        vec![ModelMeta {
            name: "pix".into(),
            inputs: vec![TensorMeta { name: "frames".into(), shape: vec![3, 2, 2] }],
            outputs: vec![TensorMeta { name: "means".into(), shape: vec![3] }],
        }]
    }
    fn ready(&self, _: &str) -> bool {
        true
    }
    async fn infer(&self, _: &str, inputs: Vec<InputTensor>) -> Result<Vec<OutputTensor>, ApiError> {
        let x = &inputs[0];
        let data = x.data.chunks(4).map(|c| c.iter().sum::<f32>() / 4.0).collect();
        Ok(vec![OutputTensor { name: "means".into(), shape: vec![x.shape[0], 3], data }])
    }
}

#[tokio::test]
async fn an_uploaded_image_is_fitted_to_the_input_and_answered_with_the_top_classes() {
    let app = router(Pixels, HttpOptions::default());
    // A 4 x 4 image: red everywhere but a blue centre; scaled to 2 x 2 with the raw preset.
    let mut img = image::RgbImage::from_pixel(4, 4, image::Rgb([200, 0, 10]));
    for (x, y) in [(1, 1), (1, 2), (2, 1), (2, 2)] {
        img.put_pixel(x, y, image::Rgb([200, 0, 250]));
    }
    let mut png = vec![];
    image::DynamicImage::ImageRgb8(img).write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    let req = Request::post("/v2/models/pix/image?preset=raw").body(Body::from(png.clone())).unwrap();
    let (s, _, b) = call(&app, req).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let v: Value = serde_json::from_slice(&b).unwrap();
    let means: Vec<f64> = v["outputs"][0]["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert!((means[0] - 200.0).abs() < 1.0 && means[1].abs() < 1.0 && means[2] > 10.0 && means[2] < 250.0, "{means:?}");
    let top: Vec<u64> = v["top5"].as_array().unwrap().iter().map(|t| t["class"].as_u64().unwrap()).collect();
    assert_eq!(top, [0, 2, 1]);
    // Not an image, an unknown preset, an unknown model: 4xx naming the problem.
    let (s, _, b) = call(&app, Request::post("/v2/models/pix/image").body(Body::from("text")).unwrap()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&b).contains("uploaded image"), "{}", String::from_utf8_lossy(&b));
    let (s, _, b) = call(&app, Request::post("/v2/models/pix/image?preset=hdr").body(Body::from(png)).unwrap()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&b).contains("hdr"));
    let (s, _, _) = call(&app, Request::post("/v2/models/nope/image").body(Body::from("x")).unwrap()).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_admin_endpoint_needs_its_token() {
    let put = |auth: Option<&str>| {
        let mut r = Request::put("/v2/admin/policy");
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.body(Body::from(r#"{"policy":"reactive"}"#)).unwrap()
    };
    // Without a configured token the admin endpoints are off.
    let (s, _, b) = call(&app(true).0, put(Some("Bearer x"))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&b).contains("admin_token"));
    let guarded = router(Pixels, HttpOptions { admin_token: Some("t0k".into()), ..HttpOptions::default() });
    assert_eq!(call(&guarded, put(None)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&guarded, put(Some("Bearer wrong"))).await.0, StatusCode::UNAUTHORIZED);
    // With the token the backend answers: this one has no policy to swap.
    let (s, _, b) = call(&guarded, put(Some("Bearer t0k"))).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{}", String::from_utf8_lossy(&b));
}

/// Sends `head` (request line and headers, no body) on a fresh connection to `addr` and
/// returns the status line of the answer, which must come within 5 s.
async fn status_without_body(addr: std::net::SocketAddr, head: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), c.read(&mut buf))
        .await
        .expect("answered without waiting for the body")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_string()
}

#[tokio::test]
async fn oversized_declarations_and_unauthorised_admin_bodies_are_refused_before_reading() {
    let app =
        router(Pixels, HttpOptions { admin_token: Some("t0k".into()), max_body: 1 << 20, ..HttpOptions::default() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    // A gigabyte announced and nothing sent: 413 at once.
    let line = status_without_body(
        addr,
        "POST /v2/models/pix/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n",
    )
    .await;
    assert!(line.contains("413"), "{line}");
    // An admin upload without the token: 401 before its body (900 kB announced, none sent).
    let line =
        status_without_body(addr, "PUT /v2/admin/policy HTTP/1.1\r\nHost: x\r\nContent-Length: 900000\r\n\r\n").await;
    assert!(line.contains("401"), "{line}");
}
