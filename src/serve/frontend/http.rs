//! The frontend's HTTP API: KServe v2 / Open Inference Protocol (health, server and model
//! metadata, model readiness, inference with JSON or binary tensors) and Prometheus
//! `/metrics`, over any [`Backend`] that runs the models.
//!
//! | method | path | answer |
//! | --- | --- | --- |
//! | GET | `/v2/health/live` | 200 while the process serves |
//! | GET | `/v2/health/ready` | 200 when every model is ready, else 503 |
//! | GET | `/v2` | server metadata (name, version, extensions) |
//! | GET | `/v2/models/{m}` (or `/versions/{v}`) | model metadata: inputs and outputs, batch dimension -1 |
//! | GET | `/v2/models/{m}/ready` | 200 or 503; 404 for an unknown model |
//! | POST | `/v2/models/{m}/infer` (or `/versions/{v}/infer`) | inference ([`crate::serve::frontend::kserve`]) |
//! | POST | `/v2/models/{m}/image` (`?preset=imagenet\|unit\|raw`) | convenience: one PNG/JPEG/BMP/PNM image as the body, fitted to the model's input; the outputs and, for a classifier, the top 5 |
//! | GET | `/metrics` | request counts by model and status, latency histograms, the backend's own |
//! | PUT/POST | `/v2/admin/policy` | replace the batching policy (a .wasm/.wat body, or `{"policy": NAME}`); needs `Authorization: Bearer TOKEN` |
//!
//! Errors are `{"error": "..."}` with 400 (malformed or mismatched request), 404 (unknown
//! model), 413 (body over the limit), 503 (not ready, or the backend cannot take it) or what
//! the backend says. Each input's shape must match the model's except for the batch
//! dimension, which may be any size from 1.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use crate::serve::frontend::kserve::{
    ApiError, HEADER_LENGTH, InputTensor, OutputTensor, encode_response, parse_request,
};

pub use crate::serve::protocol::{ModelMeta, TensorMeta};

/// Runs the models behind the API.
pub trait Backend: Send + Sync + 'static {
    /// The models served.
    fn models(&self) -> Vec<ModelMeta>;
    /// Whether `model` takes requests now.
    fn ready(&self, model: &str) -> bool;
    /// Why `model` does not take requests now, in words for the client (when known).
    fn unready_reason(&self, _model: &str) -> Option<String> {
        None
    }
    /// Runs one request: inputs checked against the model's signature (any batch size), in
    /// signature order; outputs in signature order.
    fn infer(
        &self,
        model: &str,
        inputs: Vec<InputTensor>,
    ) -> impl Future<Output = Result<Vec<OutputTensor>, ApiError>> + Send;
    /// Replaces the batching policy (admin): `body` is a WebAssembly module (binary, or WAT
    /// text) or JSON `{"policy": NAME}` naming a native policy or built-in guest. Returns the
    /// new policy's name.
    fn set_policy(&self, body: &[u8]) -> Result<String, ApiError> {
        let _ = body;
        Err(ApiError { status: 404, message: "this server has no policy to swap".into(), retry_after_s: None })
    }
    /// More Prometheus metrics of the backend, appended to `/metrics` (text format).
    fn metrics_text(&self) -> String {
        String::new()
    }
    /// The model's serving state, shown as `parameters` in its metadata (queue, profile
    /// corrections, ...), when the backend has one.
    fn model_parameters(&self, _model: &str) -> Option<serde_json::Value> {
        None
    }
}

/// Settings of the HTTP API.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Largest request body, bytes: binary tensor requests, images, policy uploads.
    pub max_body: usize,
    /// Largest inference request in JSON (without binary tensor data), bytes. JSON costs far
    /// more to parse than binary data, so its limit is lower.
    pub max_json_body: usize,
    /// Memory budget of the request bodies in flight, bytes: each request holds three times
    /// its declared length (its body, and its tensors as f32) until answered; a request that
    /// does not fit is refused with 503 and `Retry-After: 1` before its body is read.
    pub max_in_flight_bytes: usize,
    /// Longest time to receive a request's body; a slower one gets 408.
    pub body_timeout: std::time::Duration,
    /// Bearer token of the admin endpoints; they are disabled without one.
    pub admin_token: Option<String>,
    /// Refuse inputs holding NaN or an infinity (JSON numbers beyond f32, like `1e39`,
    /// included) with 400 naming the tensor and the element.
    pub reject_non_finite: bool,
    /// The server's connection cap, timeouts and threads ([`listen`]).
    pub server: crate::serve::frontend::server::ServerLimits,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            max_body: 64 << 20,
            max_json_body: 16 << 20,
            max_in_flight_bytes: 1 << 30,
            body_timeout: std::time::Duration::from_secs(30),
            admin_token: None,
            reject_non_finite: true,
            server: Default::default(),
        }
    }
}

/// Bodies above this size are parsed on a blocking thread, not on the server's runtime.
const PARSE_INLINE: usize = 64 << 10;
/// A request holds this many times its body's size of the in-flight budget.
const BUDGET_FACTOR: u64 = 3;

pub use poolpipe_dataplane::stats::Histogram;

#[derive(Default)]
struct Metrics {
    /// (model, status) -> count.
    requests: BTreeMap<(String, u16), u64>,
    /// model -> latency of successful inferences.
    latency: BTreeMap<String, Histogram>,
}

impl Metrics {
    fn record(&mut self, model: &str, status: u16, secs: f64) {
        *self.requests.entry((model.to_string(), status)).or_default() += 1;
        if status == 200 {
            self.latency.entry(model.to_string()).or_default().observe(secs);
        }
    }
}

struct Shared<B> {
    backend: B,
    options: HttpOptions,
    metrics: Mutex<Metrics>,
    /// Body limits by kind of request.
    limits: Limits,
    /// The in-flight budget, in KiB.
    budget: Arc<tokio::sync::Semaphore>,
    budget_kib: u32,
}

/// The router of the API over `backend`.
pub fn router<B: Backend>(backend: B, options: HttpOptions) -> Router {
    let limits = Limits::of_options(&options);
    let budget_kib = (options.max_in_flight_bytes / 1024).clamp(1, u32::MAX as usize >> 4) as u32;
    let shared = Arc::new(Shared {
        backend,
        options,
        metrics: Mutex::new(Metrics::default()),
        limits,
        budget: Arc::new(tokio::sync::Semaphore::new(budget_kib as usize)),
        budget_kib,
    });
    Router::new()
        .route("/v2/health/live", get(|| async { json(StatusCode::OK, &serde_json::json!({"live": true})) }))
        .route("/v2/health/ready", get(ready::<B>))
        .route("/v2", get(server_meta))
        .route("/v2/models/{model}", get(model_meta::<B>))
        .route("/v2/models/{model}/versions/{version}", get(model_meta_v::<B>))
        .route("/v2/models/{model}/ready", get(model_ready::<B>))
        .route("/v2/models/{model}/versions/{version}/ready", get(model_ready_v::<B>))
        .route("/v2/models/{model}/infer", post(infer::<B>))
        .route("/v2/models/{model}/versions/{version}/infer", post(infer_v::<B>))
        .route("/metrics", get(metrics::<B>))
        .route("/v2/models/{model}/image", post(image::<B>))
        .route("/v2/admin/policy", axum::routing::put(set_policy::<B>).post(set_policy::<B>))
        .fallback(|| async {
            error(&ApiError {
                status: 404,
                message: "no such endpoint; see /v2 (KServe v2)".into(),
                retry_after_s: None,
            })
        })
        .layer(axum::middleware::from_fn(move |req, next| declared_length(limits, req, next)))
        .with_state(shared)
}

/// The body limits by kind of request.
#[derive(Debug, Clone, Copy)]
struct Limits {
    binary: usize,
    json: usize,
}

impl Limits {
    /// The JSON limit is never above the binary one.
    fn of_options(o: &HttpOptions) -> Limits {
        Limits { binary: o.max_body, json: o.max_json_body.min(o.max_body) }
    }
    /// The limit of a request: JSON inference requests (no binary tensor data) have the
    /// JSON limit, everything else the binary one.
    fn of(&self, path: &str, headers: &HeaderMap) -> (usize, &'static str) {
        if path.ends_with("/infer") && !headers.contains_key(HEADER_LENGTH) {
            (self.json, "max_json_body_bytes, for JSON tensors; binary tensor data may be larger")
        } else {
            (self.binary, "max_body_bytes")
        }
    }
}

fn declared(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok())
}

/// Refuses with 413 a request whose declared `Content-Length` is over the limit of its kind,
/// before reading a byte of its body (a client announcing a gigabyte is not waited for).
async fn declared_length(limits: Limits, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let (max, key) = limits.of(req.uri().path(), req.headers());
    if let Some(n) = declared(req.headers()).filter(|&n| n > max as u64) {
        return error(&ApiError {
            status: 413,
            message: format!(
                "the request declares a body of {n} bytes (Content-Length); this server takes at most {max} ({key})"
            ),
            retry_after_s: None,
        });
    }
    next.run(req).await
}

/// A request's share of the in-flight budget, returned when dropped.
type Held = tokio::sync::OwnedSemaphorePermit;

/// Reads a request's body: within the limit of its kind, the body timeout, and the in-flight
/// budget (the declared length reserved before reading; a body of unknown length reserves as
/// it arrives). The share is held until the returned permit drops.
async fn read_body<B: Backend>(
    s: &Shared<B>,
    what: &str,
    path: &str,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<(Bytes, Held), ApiError> {
    let (max, key) = s.limits.of(path, headers);
    let full = || ApiError {
        status: 503,
        message: format!(
            "this server holds as many request bytes as it may (max_in_flight_bytes = {}); retry shortly",
            s.options.max_in_flight_bytes
        ),
        retry_after_s: Some(1),
    };
    let kib_of = |bytes: u64| (bytes.saturating_mul(BUDGET_FACTOR).div_ceil(1024)).clamp(1, s.budget_kib as u64) as u32;
    // The declared length is reserved at once; a body of unknown length (chunked) reserves
    // as it arrives.
    let declared = declared(headers).map(|n| n.min(max as u64));
    let mut held_kib = kib_of(declared.unwrap_or(0));
    let mut held = s.budget.clone().try_acquire_many_owned(held_kib).map_err(|_| full())?;
    let timeout = s.options.body_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut body = body;
    let mut buf = bytes::BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    loop {
        let frame = match tokio::time::timeout_at(deadline, http_body_util::BodyExt::frame(&mut body)).await {
            Err(_) => {
                return Err(ApiError {
                    status: 408,
                    message: format!(
                        "{what} did not arrive within {:.0} s; send it faster or in a smaller request",
                        timeout.as_secs_f64()
                    ),
                    retry_after_s: None,
                });
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(ApiError {
                    status: 400,
                    message: format!("{what} could not be read: {e}"),
                    retry_after_s: None,
                });
            }
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else { continue };
        if buf.len() + data.len() > max {
            return Err(ApiError {
                status: 413,
                message: format!("{what} is over the limit: this server takes at most {max} bytes ({key})"),
                retry_after_s: None,
            });
        }
        buf.extend_from_slice(&data);
        let need = kib_of(buf.len() as u64);
        if need > held_kib {
            let more = s.budget.clone().try_acquire_many_owned(need - held_kib).map_err(|_| full())?;
            held.merge(more);
            held_kib = need;
        }
    }
    Ok((buf.freeze(), held))
}

fn json(status: StatusCode, v: &impl Serialize) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = json(status, &serde_json::json!({ "error": e.message }));
    if let Some(s) = e.retry_after_s {
        r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(s));
    }
    r
}

fn find<B: Backend>(s: &Shared<B>, model: &str) -> Result<ModelMeta, ApiError> {
    let models = s.backend.models();
    models.iter().find(|m| m.name == model).cloned().ok_or_else(|| ApiError {
        status: 404,
        message: format!(
            "unknown model '{model}'; this server has: {}",
            models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
        ),
        retry_after_s: None,
    })
}

async fn ready<B: Backend>(State(s): State<Arc<Shared<B>>>) -> Response {
    let all = s.backend.models().iter().all(|m| s.backend.ready(&m.name));
    let status = if all { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    json(status, &serde_json::json!({ "ready": all }))
}

async fn server_meta() -> Response {
    json(
        StatusCode::OK,
        &serde_json::json!({"name": "poolpipe", "version": env!("CARGO_PKG_VERSION"), "extensions": ["binary_tensor_data"]}),
    )
}

fn tensor_json(t: &TensorMeta) -> serde_json::Value {
    let shape: Vec<i64> = std::iter::once(-1).chain(t.shape.iter().map(|&d| d as i64)).collect();
    serde_json::json!({"name": t.name, "datatype": "FP32", "shape": shape})
}

async fn model_meta<B: Backend>(State(s): State<Arc<Shared<B>>>, Path(model): Path<String>) -> Response {
    match find(&s, &model) {
        Ok(m) => {
            let mut v = serde_json::json!({
                "name": m.name,
                "versions": ["1"],
                "platform": "poolpipe",
                "inputs": m.inputs.iter().map(tensor_json).collect::<Vec<_>>(),
                "outputs": m.outputs.iter().map(tensor_json).collect::<Vec<_>>(),
            });
            if let Some(p) = s.backend.model_parameters(&m.name) {
                v["parameters"] = p;
            }
            json(StatusCode::OK, &v)
        }
        Err(e) => error(&e),
    }
}

async fn model_meta_v<B: Backend>(state: State<Arc<Shared<B>>>, Path((model, _)): Path<(String, String)>) -> Response {
    model_meta(state, Path(model)).await
}

async fn model_ready<B: Backend>(State(s): State<Arc<Shared<B>>>, Path(model): Path<String>) -> Response {
    match find(&s, &model) {
        Ok(_) if s.backend.ready(&model) => json(StatusCode::OK, &serde_json::json!({"name": model, "ready": true})),
        Ok(_) => json(StatusCode::SERVICE_UNAVAILABLE, &serde_json::json!({"name": model, "ready": false})),
        Err(e) => error(&e),
    }
}

async fn model_ready_v<B: Backend>(state: State<Arc<Shared<B>>>, Path((model, _)): Path<(String, String)>) -> Response {
    model_ready(state, Path(model)).await
}

/// Checks inputs against the signature; returns them in signature order.
fn match_inputs(meta: &ModelMeta, mut inputs: Vec<InputTensor>) -> Result<Vec<InputTensor>, ApiError> {
    let bad = |message: String| ApiError { status: 400, message, retry_after_s: None };
    let mut ordered = Vec::with_capacity(meta.inputs.len());
    for want in &meta.inputs {
        let i = inputs.iter().position(|t| t.name == want.name).ok_or_else(|| {
            bad(format!("model '{}' needs input '{}' with shape [N, {}]", meta.name, want.name, dims(&want.shape)))
        })?;
        let t = inputs.swap_remove(i);
        if t.shape.len() != want.shape.len() + 1 || t.shape[1..] != want.shape[..] || t.shape[0] == 0 {
            return Err(bad(format!(
                "input '{}' of model '{}' has shape {:?}; it takes [N, {}] with N >= 1",
                t.name,
                meta.name,
                t.shape,
                dims(&want.shape)
            )));
        }
        ordered.push(t);
    }
    if let Some(extra) = inputs.first() {
        return Err(bad(format!("model '{}' has no input '{}'", meta.name, extra.name)));
    }
    let batches: Vec<usize> = ordered.iter().map(|t| t.shape[0]).collect();
    if batches.windows(2).any(|w| w[0] != w[1]) {
        return Err(bad(format!("the inputs' batch sizes differ: {batches:?}")));
    }
    Ok(ordered)
}

fn dims(shape: &[usize]) -> String {
    shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
}

async fn infer<B: Backend>(
    State(s): State<Arc<Shared<B>>>,
    Path(model): Path<String>,
    req: axum::extract::Request,
) -> Response {
    let started = Instant::now();
    let result = run_infer(&s, &model, req).await;
    answer(&s, &model, started, result)
}

async fn infer_v<B: Backend>(
    state: State<Arc<Shared<B>>>,
    Path((model, _)): Path<(String, String)>,
    req: axum::extract::Request,
) -> Response {
    infer(state, Path(model), req).await
}

/// Parses a request body and, when asked, refuses non-finite inputs.
fn parse_checked(
    body: &[u8],
    header_length: Option<usize>,
    max_elements: usize,
    reject_non_finite: bool,
) -> Result<crate::serve::frontend::kserve::InferRequest, ApiError> {
    let req = parse_request(body, header_length, max_elements)?;
    if reject_non_finite {
        for t in &req.inputs {
            if let Some((i, v)) = t.data.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(ApiError {
                    status: 400,
                    message: format!(
                        "input '{}': element {i} is {v} (as f32), not a finite number; send finite values (or set reject_non_finite = false in [controller])",
                        t.name
                    ),
                    retry_after_s: None,
                });
            }
        }
    }
    Ok(req)
}

async fn run_infer<B: Backend>(s: &Shared<B>, model: &str, req: axum::extract::Request) -> Result<Response, ApiError> {
    let meta = find(s, model)?;
    let (parts, body) = req.into_parts();
    let header_length = match parts.headers.get(HEADER_LENGTH) {
        None => None,
        Some(v) => Some(v.to_str().ok().and_then(|v| v.trim().parse::<usize>().ok()).ok_or_else(|| ApiError {
            status: 400,
            message: format!("{HEADER_LENGTH} must be a byte count"),
            retry_after_s: None,
        })?),
    };
    if !s.backend.ready(model) {
        return Err(ApiError {
            status: 503,
            message: match s.backend.unready_reason(model) {
                Some(why) => format!("model '{model}' is not ready: {why}"),
                None => format!("model '{model}' is not ready; see /v2/models/{model}/ready"),
            },
            retry_after_s: None,
        });
    }
    let (body, _held) = read_body(s, "the request body", parts.uri.path(), &parts.headers, body).await?;
    let (max_elements, reject) = (s.options.max_body, s.options.reject_non_finite);
    // A large body takes a while to parse: off the server's threads.
    let mut req = if body.len() > PARSE_INLINE {
        tokio::task::spawn_blocking(move || parse_checked(&body, header_length, max_elements, reject)).await.map_err(
            |e| ApiError { status: 500, message: format!("parsing the request: {e}"), retry_after_s: None },
        )??
    } else {
        parse_checked(&body, header_length, max_elements, reject)?
    };
    let inputs = match_inputs(&meta, std::mem::take(&mut req.inputs))?;
    let outputs = s.backend.infer(model, inputs).await?;
    let (body, json_len) = encode_response(model, &req, &outputs)?;
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    match json_len {
        Some(n) => {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            h.insert(HEADER_LENGTH, HeaderValue::from(n));
        }
        None => {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
    }
    Ok(resp)
}

#[derive(serde::Deserialize)]
struct ImageQuery {
    #[serde(default)]
    preset: Option<String>,
}

async fn image<B: Backend>(
    State(s): State<Arc<Shared<B>>>,
    Path(model): Path<String>,
    axum::extract::Query(q): axum::extract::Query<ImageQuery>,
    req: axum::extract::Request,
) -> Response {
    let started = Instant::now();
    let result = run_image(&s, &model, q.preset.as_deref(), req).await;
    answer(&s, &model, started, result)
}

/// The `model` label of requests for a model the server does not serve: one label for all
/// of them, so that clients sending made-up names cannot grow the metrics without bound.
pub const UNKNOWN_MODEL_LABEL: &str = "(unknown)";

/// Records an inference's status and latency and turns its result into the response.
fn answer<B: Backend>(s: &Shared<B>, model: &str, started: Instant, result: Result<Response, ApiError>) -> Response {
    let status = match &result {
        Ok(_) => 200,
        Err(e) => e.status,
    };
    let label = if status == 404 && find(s, model).is_err() { UNKNOWN_MODEL_LABEL } else { model };
    s.metrics.lock().unwrap_or_else(|p| p.into_inner()).record(label, status, started.elapsed().as_secs_f64());
    match result {
        Ok(r) => r,
        Err(e) => error(&e),
    }
}

async fn run_image<B: Backend>(
    s: &Shared<B>,
    model: &str,
    preset: Option<&str>,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    use clap::ValueEnum;
    let bad = |message: String| ApiError { status: 400, message, retry_after_s: None };
    let meta = find(s, model)?;
    let (parts, body) = req.into_parts();
    let (body, _held) = read_body(s, "the image upload", parts.uri.path(), &parts.headers, body).await?;
    let preset = match preset {
        None => crate::frames::Preset::Imagenet,
        Some(p) => crate::frames::Preset::from_str(p, true)
            .map_err(|_| bad(format!("unknown preset '{p}': use imagenet, unit or raw")))?,
    };
    let [input] = meta.inputs.as_slice() else {
        return Err(bad(format!("model '{model}' takes {} inputs; the image endpoint feeds one", meta.inputs.len())));
    };
    let frame = crate::frames::image_bytes_frame(&body, "the uploaded image", &input.shape, preset)
        .map_err(|e| bad(format!("{e:#}")))?;
    let mut shape = vec![1];
    shape.extend(&input.shape);
    let inputs = vec![InputTensor { name: input.name.clone(), shape, data: frame.data().to_vec() }];
    let outputs = s.backend.infer(model, inputs).await?;
    let top5 = outputs.first().filter(|o| o.shape.len() == 2).map(|o| {
        let mut idx: Vec<usize> = (0..o.data.len()).collect();
        idx.sort_by(|&a, &b| o.data[b].total_cmp(&o.data[a]));
        idx.into_iter().take(5).map(|i| serde_json::json!({"class": i, "score": o.data[i]})).collect::<Vec<_>>()
    });
    let outs: Vec<serde_json::Value> = outputs
        .iter()
        .map(|o| serde_json::json!({"name": o.name, "shape": o.shape, "datatype": "FP32", "data": o.data}))
        .collect();
    let mut v = serde_json::json!({"model_name": model, "outputs": outs});
    if let Some(t) = top5 {
        v["top5"] = serde_json::Value::from(t);
    }
    Ok(json(StatusCode::OK, &v))
}

async fn set_policy<B: Backend>(State(s): State<Arc<Shared<B>>>, req: axum::extract::Request) -> Response {
    // The token is checked before a byte of the body is read.
    let headers = req.headers();
    let Some(token) = &s.options.admin_token else {
        return error(&ApiError {
            status: 403,
            message: "the admin endpoints are disabled: set admin_token in [controller] to enable them".into(),
            retry_after_s: None,
        });
    };
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if given != Some(token.as_str()) {
        return error(&ApiError {
            status: 401,
            message: "admin endpoints need the header 'Authorization: Bearer TOKEN' with the configured admin_token"
                .into(),
            retry_after_s: None,
        });
    }
    let (parts, body) = req.into_parts();
    let body = match read_body(&s, "the policy upload", parts.uri.path(), &parts.headers, body).await {
        Ok((b, _held)) => b,
        Err(e) => return error(&e),
    };
    // Compiling a module takes a while: off the runtime's threads, which serve requests.
    let backend = s.clone();
    match tokio::task::spawn_blocking(move || backend.backend.set_policy(&body)).await {
        Ok(Ok(name)) => json(StatusCode::OK, &serde_json::json!({ "policy": name })),
        Ok(Err(e)) => error(&e),
        Err(e) => error(&ApiError {
            status: 500,
            message: format!("the policy swap did not finish: {e}"),
            retry_after_s: None,
        }),
    }
}

async fn metrics<B: Backend>(State(s): State<Arc<Shared<B>>>) -> Response {
    let m = s.metrics.lock().unwrap_or_else(|p| p.into_inner());
    let mut out = String::new();
    out += "# HELP poolpipe_requests_total Inference requests by model and HTTP status.\n";
    out += "# TYPE poolpipe_requests_total counter\n";
    for ((model, status), n) in &m.requests {
        out += &format!("poolpipe_requests_total{{model=\"{}\",status=\"{status}\"}} {n}\n", escape(model));
    }
    out += "# HELP poolpipe_request_seconds Latency of successful inference requests.\n";
    out += "# TYPE poolpipe_request_seconds histogram\n";
    for (model, h) in &m.latency {
        out += &h.render("poolpipe_request_seconds", &format!("model=\"{}\"", escape(model)));
    }
    drop(m);
    out += &s.backend.metrics_text();
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Serves the HTTP API of `backend` on `addr` on a runtime of its own, with the options'
/// connection cap and timeouts ([`crate::serve::frontend::server`]), until the returned
/// server is dropped.
pub fn listen<B: Backend>(
    backend: B,
    addr: std::net::SocketAddr,
    options: HttpOptions,
) -> anyhow::Result<crate::serve::frontend::server::HttpServer> {
    let limits = options.server.clone();
    crate::serve::frontend::server::serve(router(backend, options), addr, &limits)
}

#[cfg(test)]
mod tests {
    use super::Histogram;

    #[test]
    fn a_histogram_renders_cumulative_buckets_sum_and_count() {
        let mut h = Histogram::default();
        for s in [0.004, 0.2, 0.2, 30.0] {
            h.observe(s);
        }
        let text = h.render("x_seconds", "model=\"m\"");
        assert!(text.contains("x_seconds_bucket{model=\"m\",le=\"0.005\"} 1\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{model=\"m\",le=\"0.25\"} 3\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{model=\"m\",le=\"+Inf\"} 4\n"), "{text}");
        assert!(
            text.contains("x_seconds_sum{model=\"m\"} 30.404") && text.contains("x_seconds_count{model=\"m\"} 4\n")
        );
        let bare = h.render("y", "");
        assert!(bare.contains("y_bucket{le=\"10\"} 3\n") && bare.contains("y_count 4\n"), "{bare}");
    }
}
