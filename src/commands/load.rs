//! `poolpipe load`: a load generator for a KServe v2 / Open Inference Protocol HTTP server
//! (our frontend, [`crate::serve::frontend::http`], or any server that speaks the protocol), after
//! Triton's perf_analyzer.
//!
//! Two modes: an open loop (`--rate R`: Poisson arrivals at R requests/s from `--seed`, each
//! sent whether or not earlier ones were answered) and a closed loop (`--concurrency C`: C
//! requests outstanding, each answer followed at once by the next request). `--sweep` runs one
//! step per value. Each step has a warm-up (sent, not counted) and a measured window; a request
//! belongs to the window it was issued in and is awaited (up to `--timeout`) after the window
//! closes, so every measured request ends as a success, an HTTP status or a transport error
//! (status 0: refused or reset connections, malformed answers, timeouts).
//!
//! The request (HTTP head and body: JSON tensors, or the binary tensor extension with
//! `--binary`) is built once from random values in [0, 1) and sent as-is, so the generator
//! stays cheap. The HTTP/1.1 client is small and hand-written: keep-alive connections in a
//! pool, `Content-Length` or chunked answers, plain `http://` only.
//!
//! Must never: count a request twice or drop one from the counts (sent = ok + errors, always),
//! hide an error (each failure is counted by status and its message kept, a sample of the
//! distinct ones in the report), assert anything about the server's speed, or panic on what
//! the server sends. A pooled keep-alive connection that the server had closed before it
//! answered a single byte is redialled once for the same request; that request is still
//! counted once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use poolpipe_dataplane::rng::Rng;
use poolpipe_dataplane::stats::percentile;

/// Options of `poolpipe load`.
#[derive(clap::Args, Clone, Debug)]
#[command(group(clap::ArgGroup::new("mode").required(true).multiple(false).args(["rate", "concurrency"])))]
pub struct LoadArgs {
    /// Base URL of the KServe v2 HTTP server, e.g. http://127.0.0.1:8000 (http only).
    #[arg(long)]
    pub url: String,
    /// Model to load.
    #[arg(long)]
    pub model: String,
    /// Open loop: Poisson arrivals at this many requests/s, answered or not.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Closed loop: this many requests outstanding at all times.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Measured time of each step, e.g. 10s, 500ms, 2m.
    #[arg(long, default_value = "10s", value_parser = crate::commands::simulate::parse_duration)]
    pub duration: f64,
    /// Warm-up before each step's measured window (sent, not counted), e.g. 1s, 0.
    #[arg(long, default_value = "1s", value_parser = parse_warmup)]
    pub warmup: f64,
    /// Comma list of rates (with --rate) or concurrencies (with --concurrency), one step each,
    /// in this order; they replace the value given to --rate/--concurrency.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub sweep: Vec<f64>,
    /// Frames per request (the batch dimension of every input).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Shape of one frame of the first input, e.g. 3x224x224 [default: the model's metadata].
    #[arg(long, value_parser = parse_shape)]
    pub input_shape: Option<FrameShape>,
    /// Send the binary tensor data extension (and ask for binary outputs) instead of JSON.
    #[arg(long)]
    pub binary: bool,
    /// Latency objective, ms: attainment counts successes within it [default: none, every
    /// success counts].
    #[arg(long)]
    pub slo_ms: Option<f64>,
    /// Limit of one request (waiting for a connection included), e.g. 30s, 500ms.
    #[arg(long, default_value = "30s", value_parser = crate::commands::simulate::parse_duration)]
    pub timeout: f64,
    /// Seed of the arrivals and of the input values.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Open loop: most requests in flight; later arrivals wait for one to finish (the wait
    /// counts in their latency).
    #[arg(long, default_value_t = 512)]
    pub max_inflight: usize,
    /// Also write the steps as CSV (perf_analyzer-like columns) to this file.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Parses a warm-up: `0` or a duration such as 1s, 500ms.
pub fn parse_warmup(s: &str) -> std::result::Result<f64, String> {
    let t = s.trim();
    let num = ["ms", "s", "m"].iter().find_map(|u| t.strip_suffix(u)).unwrap_or(t);
    match num.trim().parse::<f64>() {
        Ok(0.0) => Ok(0.0),
        _ => crate::commands::simulate::parse_duration(s),
    }
}

/// The shape of one frame (no batch dimension), as `--input-shape` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameShape(pub Vec<usize>);

/// Parses a frame shape such as `3x224x224` (every dimension at least 1).
pub fn parse_shape(s: &str) -> std::result::Result<FrameShape, String> {
    let dims: Option<Vec<usize>> =
        s.trim().split(['x', 'X', ',']).map(|d| d.trim().parse::<usize>().ok().filter(|&d| d > 0)).collect();
    match dims {
        Some(d) if !d.is_empty() => Ok(FrameShape(d)),
        _ => Err(format!("'{s}' is not a frame shape like 3x224x224 (positive dimensions, no batch)")),
    }
}

/// Open or closed loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Open loop: Poisson arrivals at a rate (requests/s).
    Rate,
    /// Closed loop: a number of requests outstanding.
    Concurrency,
}

/// Latency of the successful requests of a step, ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Mean.
    pub mean: f64,
    /// Largest.
    pub max: f64,
}

/// One step: one rate or concurrency, its measured window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    /// The offered value: requests/s (rate) or requests outstanding (concurrency).
    pub value: f64,
    /// Measured window, seconds.
    pub duration_s: f64,
    /// Requests issued in the window (each counted once: ok or one of the errors).
    pub sent: u64,
    /// Answered 200 with a KServe response.
    pub ok: u64,
    /// Failed requests by HTTP status; 0 for transport errors, malformed answers and timeouts.
    pub errors: BTreeMap<u16, u64>,
    /// Distinct error messages (the server's `error` or the transport's), with counts; at most
    /// [`MAX_MESSAGES`] kept, the rest under "(other messages)".
    pub error_messages: BTreeMap<String, u64>,
    /// Successful requests per second of the window.
    pub throughput: f64,
    /// Successful frames per second (throughput times the batch).
    pub inferences_per_s: f64,
    /// Requests written to the server within the window, per second (below the offered rate
    /// when the generator or --max-inflight held them back).
    pub send_rate: f64,
    /// Latency of the successes, ms (none without a success).
    pub latency_ms: Option<Latency>,
    /// Successes within the SLO (every success without one) over sent; 0 when none was sent.
    pub attainment: f64,
    /// Every measured request, in the order they ended (for callers that look inside the
    /// window, such as `poolpipe bench serving`; not in the JSON report).
    #[serde(skip)]
    pub requests: Vec<RequestSample>,
}

/// One measured request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestSample {
    /// When it was issued, seconds after the measured window opened.
    pub issued_s: f64,
    /// Its latency, ms (to its answer, its error or its timeout).
    pub latency_ms: f64,
    /// 200 for a success, else the HTTP status, 0 for transport errors.
    pub status: u16,
}

impl StepReport {
    /// All failed requests.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// An input tensor of the requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputSent {
    /// Name.
    pub name: String,
    /// Shape, batch first.
    pub shape: Vec<usize>,
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    /// Base URL.
    pub url: String,
    /// Model.
    pub model: String,
    /// Open or closed loop.
    pub mode: Mode,
    /// Frames per request.
    pub batch: usize,
    /// The inputs sent.
    pub inputs: Vec<InputSent>,
    /// Binary tensor extension (else JSON).
    pub binary: bool,
    /// Request body size, bytes.
    pub request_bytes: usize,
    /// Latency objective, ms.
    pub slo_ms: Option<f64>,
    /// Seed of arrivals and inputs.
    pub seed: u64,
    /// The steps, in order.
    pub steps: Vec<StepReport>,
}

/// Most distinct error messages kept per step.
pub const MAX_MESSAGES: usize = 8;

// ---------------------------------------------------------------------------------------------
// URL

/// Where to send: parsed from `--url`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// The URL without a trailing slash, for messages.
    base: String,
    /// Host as resolved (IPv6 without brackets).
    host: String,
    port: u16,
    /// `Host` header value.
    authority: String,
    /// Path prefix before `/v2/...`, no trailing slash.
    prefix: String,
}

fn parse_url(s: &str) -> Result<Target> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    if lower.starts_with("https://") {
        bail!(
            "--url {s}: https is not supported; give the server's http:// address, or put a TLS-terminating \
             proxy in front of an https server and give the proxy's http:// address"
        );
    }
    let Some(rest) = lower.starts_with("http://").then(|| &t[7..]) else {
        match t.split_once("://") {
            Some((scheme, _)) => bail!("--url {s}: scheme '{scheme}' is not supported; give http://HOST:PORT"),
            None => bail!("--url {s}: give the scheme too, e.g. http://{t} (http://HOST:PORT)"),
        }
    };
    if rest.contains(['?', '#']) {
        bail!("--url {s}: give a base URL without a query or fragment, e.g. http://127.0.0.1:8000");
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.contains('@') {
        bail!("--url {s}: credentials in the URL are not supported");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| anyhow!("--url {s}: unclosed '[' in the host"))?;
        match after {
            "" => (h, None),
            p => (h, Some(p.strip_prefix(':').ok_or_else(|| anyhow!("--url {s}: expected ':PORT' after ']'"))?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        bail!("--url {s}: no host; give http://HOST:PORT, e.g. http://127.0.0.1:8000");
    }
    let port = match port {
        None => 80,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| anyhow!("--url {s}: '{p}' is not a port (1-65535)"))?,
    };
    let mut prefix = path.trim_end_matches('/').to_string();
    if prefix.ends_with("/v2") {
        prefix.truncate(prefix.len() - 3);
    }
    Ok(Target {
        base: format!("http://{authority}{prefix}"),
        host: host.to_string(),
        port,
        authority: authority.to_string(),
        prefix,
    })
}

/// Percent-encodes a path segment.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out += &format!("%{b:02X}");
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 client

/// Longest response head.
const MAX_HEAD: usize = 64 << 10;
/// Largest response body.
const MAX_RESPONSE: usize = 1 << 30;

/// A parsed response.
#[derive(Debug)]
struct Response {
    status: u16,
    body: Vec<u8>,
    /// `Inference-Header-Content-Length`.
    header_length: Option<usize>,
    /// The connection may carry another request.
    keep_alive: bool,
}

/// A failed exchange; `stale` when a reused connection was found closed before any byte of
/// the answer (the server closed it while idle: safe to redial once).
#[derive(Debug)]
struct ExchangeError {
    msg: String,
    stale: bool,
}

fn xerr(msg: impl Into<String>) -> ExchangeError {
    ExchangeError { msg: msg.into(), stale: false }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads more bytes into `buf`; `Ok(false)` at end of stream.
async fn fill<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    buf.reserve(64 << 10);
    Ok(r.read_buf(buf).await? > 0)
}

async fn fill_or_fail<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> Result<(), ExchangeError> {
    match fill(r, buf).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(xerr("the server closed the connection in the middle of its answer")),
        Err(e) => Err(xerr(format!("reading the answer: {e}"))),
    }
}

/// Reads one response from `r`; `buf` holds bytes already read (empty between responses).
async fn read_response<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> Result<Response, ExchangeError> {
    let mut any = !buf.is_empty();
    loop {
        let end = loop {
            if let Some(i) = find(buf, b"\r\n\r\n") {
                break i;
            }
            if buf.len() > MAX_HEAD {
                return Err(xerr(format!("the answer's head is longer than {MAX_HEAD} bytes: not an HTTP server?")));
            }
            match fill(r, buf).await {
                Ok(true) => any = true,
                Ok(false) => {
                    return Err(ExchangeError {
                        msg: "the server closed the connection without answering".into(),
                        stale: !any,
                    });
                }
                Err(e) => {
                    let stale = !any
                        && matches!(
                            e.kind(),
                            std::io::ErrorKind::ConnectionReset
                                | std::io::ErrorKind::ConnectionAborted
                                | std::io::ErrorKind::BrokenPipe
                        );
                    return Err(ExchangeError { msg: format!("reading the answer: {e}"), stale });
                }
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        let status = parts.next().and_then(|s| s.parse::<u16>().ok());
        let (Some(status), true) = (status, version.starts_with("HTTP/1.")) else {
            let shown: String = status_line.chars().take(80).collect();
            return Err(xerr(format!("not an HTTP/1.x answer: '{shown}'")));
        };
        let mut keep_alive = version != "HTTP/1.0";
        let (mut length, mut chunked, mut header_length) = (None, false, None);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => {
                    length = Some(value.parse::<usize>().map_err(|_| xerr(format!("bad Content-Length '{value}'")))?)
                }
                "transfer-encoding" => chunked = value.to_ascii_lowercase().split(',').any(|v| v.trim() == "chunked"),
                "connection" => {
                    let v = value.to_ascii_lowercase();
                    if v.contains("close") {
                        keep_alive = false;
                    } else if v.contains("keep-alive") {
                        keep_alive = true;
                    }
                }
                n if n == crate::serve::frontend::kserve::HEADER_LENGTH.to_ascii_lowercase() => {
                    header_length = value.parse::<usize>().ok()
                }
                _ => {}
            }
        }
        if (100..200).contains(&status) {
            continue; // interim answer: the real one follows
        }
        let body = if chunked {
            read_chunked(r, buf).await?
        } else if let Some(n) = length {
            if n > MAX_RESPONSE {
                return Err(xerr(format!("the answer announces {n} bytes, over the {MAX_RESPONSE}-byte limit")));
            }
            while buf.len() < n {
                fill_or_fail(r, buf).await?;
            }
            buf.drain(..n).collect()
        } else if status == 204 || status == 304 {
            vec![]
        } else {
            keep_alive = false;
            loop {
                if buf.len() > MAX_RESPONSE {
                    return Err(xerr(format!("the answer is over the {MAX_RESPONSE}-byte limit")));
                }
                match fill(r, buf).await {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => return Err(xerr(format!("reading the answer: {e}"))),
                }
            }
            std::mem::take(buf)
        };
        if !buf.is_empty() {
            keep_alive = false; // bytes after the answer: do not trust this connection again
        }
        return Ok(Response { status, body, header_length, keep_alive });
    }
}

async fn read_chunked<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> Result<Vec<u8>, ExchangeError> {
    let mut body = vec![];
    loop {
        let line_end = loop {
            if let Some(i) = find(buf, b"\r\n") {
                break i;
            }
            if buf.len() > MAX_HEAD {
                return Err(xerr("a chunk size line is too long"));
            }
            fill_or_fail(r, buf).await?;
        };
        let line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        buf.drain(..line_end + 2);
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| xerr(format!("bad chunk size '{}'", size_text.chars().take(20).collect::<String>())))?;
        if size == 0 {
            // Trailers, up to an empty line.
            loop {
                if let Some(i) = find(buf, b"\r\n") {
                    buf.drain(..i + 2);
                    if i == 0 {
                        return Ok(body);
                    }
                    continue;
                }
                if buf.len() > MAX_HEAD {
                    return Err(xerr("the chunked answer's trailers are too long"));
                }
                fill_or_fail(r, buf).await?;
            }
        }
        if body.len().saturating_add(size) > MAX_RESPONSE {
            return Err(xerr(format!("the answer is over the {MAX_RESPONSE}-byte limit")));
        }
        while buf.len() < size + 2 {
            fill_or_fail(r, buf).await?;
        }
        if &buf[size..size + 2] != b"\r\n" {
            return Err(xerr("a chunk does not end with CRLF"));
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn exchange(&mut self, request: &[u8], reused: bool) -> Result<Response, ExchangeError> {
        if let Err(e) = self.stream.write_all(request).await {
            let stale = reused
                && matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::BrokenPipe
                );
            return Err(ExchangeError { msg: format!("sending the request: {e}"), stale });
        }
        let mut r = read_response(&mut self.stream, &mut self.buf).await;
        if let Err(e) = &mut r {
            e.stale &= reused;
        }
        r
    }
}

/// Keep-alive connections to one server.
struct Client {
    target: Target,
    addrs: Vec<SocketAddr>,
    idle: Mutex<Vec<Conn>>,
}

impl Client {
    async fn new(target: Target) -> Result<Client> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .with_context(|| format!("cannot resolve host '{}' of --url {}", target.host, target.base))?
            .collect();
        if addrs.is_empty() {
            bail!("host '{}' of --url {} has no address", target.host, target.base);
        }
        Ok(Client { target, addrs, idle: Mutex::new(vec![]) })
    }

    async fn connect(&self) -> Result<Conn, String> {
        let mut last = String::new();
        for addr in &self.addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(Conn { stream, buf: vec![] });
                }
                Err(e) => last = format!("cannot connect to {} ({addr}): {e}", self.target.base),
            }
        }
        Err(last)
    }

    fn put(&self, c: Conn) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(c);
    }

    /// One request on an idle connection or a new one; a reused connection found closed
    /// before it answered anything is redialled once.
    async fn send(&self, request: &[u8]) -> Result<Response, String> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        if let Some(mut c) = pooled {
            match c.exchange(request, true).await {
                Ok(r) => {
                    if r.keep_alive {
                        self.put(c);
                    }
                    return Ok(r);
                }
                Err(e) if e.stale => {}
                Err(e) => return Err(e.msg),
            }
        }
        let mut c = self.connect().await?;
        let r = c.exchange(request, false).await.map_err(|e| e.msg)?;
        if r.keep_alive {
            self.put(c);
        }
        Ok(r)
    }

    fn request(&self, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> Bytes {
        let mut head = format!("{method} {}{path} HTTP/1.1\r\nHost: {}\r\n", self.target.prefix, self.target.authority);
        for (k, v) in headers {
            head += &format!("{k}: {v}\r\n");
        }
        head += &format!("Content-Length: {}\r\n\r\n", body.len());
        let mut out = Vec::with_capacity(head.len() + body.len());
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(body);
        Bytes::from(out)
    }
}

/// The `error` of a KServe error answer, or its text (shortened).
fn error_text(body: &[u8]) -> String {
    let text = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    let mut short: String = text.chars().take(300).collect();
    if short.len() < text.len() {
        short += "...";
    }
    if short.is_empty() { "(empty answer)".into() } else { short }
}

// ---------------------------------------------------------------------------------------------
// The request

/// Tensor names and shapes.
type Tensors = Vec<(String, Vec<usize>)>;

/// Most elements of one request.
const MAX_ELEMENTS: usize = 1 << 28;

/// The inputs to send, from the model's metadata (batch dimension dropped) and `--input-shape`.
fn inputs_from_meta(
    model: &str,
    meta: &serde_json::Value,
    shape: Option<&[usize]>,
) -> Result<Vec<(String, Vec<usize>)>> {
    let list = meta.get("inputs").and_then(|v| v.as_array()).filter(|l| !l.is_empty());
    let Some(list) = list else {
        bail!("the server's metadata for model '{model}' lists no inputs: is it a KServe v2 server?");
    };
    let mut out = vec![];
    for (i, input) in list.iter().enumerate() {
        let name = input
            .get("name")
            .and_then(|n| n.as_str())
            .ok_or_else(|| anyhow!("the server's metadata for model '{model}' has an input without a name"))?;
        if let Some(dt) = input.get("datatype").and_then(|d| d.as_str())
            && dt != "FP32"
        {
            bail!("input '{name}' of model '{model}' is {dt}; `poolpipe load` sends FP32 only");
        }
        let dims = if i == 0
            && let Some(s) = shape
        {
            s.to_vec()
        } else {
            let raw: Option<Vec<i64>> =
                input.get("shape").and_then(|s| s.as_array()).map(|a| a.iter().filter_map(|d| d.as_i64()).collect());
            let raw = raw.filter(|r| !r.is_empty()).ok_or_else(|| {
                anyhow!(
                    "the server's metadata gives no shape for input '{name}' of model '{model}'; give --input-shape"
                )
            })?;
            let frame: Option<Vec<usize>> =
                raw[1..].iter().map(|&d| usize::try_from(d).ok().filter(|&d| d > 0)).collect();
            match frame {
                Some(f) => f,
                None if i == 0 => bail!(
                    "input '{name}' of model '{model}' has shape {raw:?} with free dimensions; give --input-shape"
                ),
                None => bail!(
                    "input '{name}' of model '{model}' has shape {raw:?} with free dimensions; `poolpipe load` cannot fill it"
                ),
            }
        };
        out.push((name.to_string(), dims));
    }
    Ok(out)
}

/// The request body for `inputs` (frame shapes) at `batch`: returns the body, the
/// `Inference-Header-Content-Length` (binary) and the shapes sent (batch first).
fn build_body(
    inputs: &[(String, Vec<usize>)],
    batch: usize,
    binary: bool,
    seed: u64,
) -> Result<(Vec<u8>, Option<usize>, Tensors)> {
    let mut rng = Rng::new(seed, 0x6C6F_6164); // "load"
    let mut tensors = vec![];
    let mut tail: Vec<u8> = vec![];
    let mut shapes = vec![];
    for (name, frame) in inputs {
        let shape: Vec<usize> = std::iter::once(batch).chain(frame.iter().copied()).collect();
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&n| n <= MAX_ELEMENTS).ok_or_else(
            || {
                anyhow!(
                    "input '{name}' of shape {shape:?} is over {MAX_ELEMENTS} elements: lower --batch or --input-shape"
                )
            },
        )?;
        let data: Vec<f32> = (0..n).map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32).collect();
        let t = if binary {
            tail.extend(data.iter().flat_map(|x| x.to_le_bytes()));
            serde_json::json!({"name": name, "shape": shape, "datatype": "FP32",
                               "parameters": {"binary_data_size": n * 4}})
        } else {
            serde_json::json!({"name": name, "shape": shape, "datatype": "FP32", "data": data})
        };
        tensors.push(t);
        shapes.push((name.clone(), shape));
    }
    let mut req = serde_json::json!({ "inputs": tensors });
    if binary {
        req["parameters"] = serde_json::json!({"binary_data_output": true});
    }
    let mut body = serde_json::to_vec(&req).context("encoding the request")?;
    if binary {
        let n = body.len();
        body.extend(tail);
        Ok((body, Some(n), shapes))
    } else {
        Ok((body, None, shapes))
    }
}

// ---------------------------------------------------------------------------------------------
// Steps

/// The mode and the step values, checked.
fn steps(args: &LoadArgs) -> Result<(Mode, Vec<f64>)> {
    let (mode, single) = match (args.rate, args.concurrency) {
        (Some(r), None) => (Mode::Rate, r),
        (None, Some(c)) => (Mode::Concurrency, c as f64),
        _ => bail!("give exactly one of --rate (open loop) and --concurrency (closed loop)"),
    };
    let values = if args.sweep.is_empty() { vec![single] } else { args.sweep.clone() };
    for &v in &values {
        match mode {
            Mode::Rate if !(v.is_finite() && v > 0.0 && v <= 1e6) => {
                bail!("rate {v} must be a positive number of requests/s (at most 1e6)")
            }
            Mode::Concurrency if !(v.fract() == 0.0 && (1.0..=100_000.0).contains(&v)) => {
                bail!("concurrency {v} must be a whole number of requests from 1 to 100000")
            }
            _ => {}
        }
    }
    Ok((mode, values))
}

/// What happened to one request.
struct Outcome {
    /// 200 for a success, else the status, 0 for transport errors.
    status: u16,
    latency: Duration,
    /// When it was issued.
    issued: Instant,
    /// When it was written (none if it never got a connection).
    written: Option<Instant>,
    message: Option<String>,
}

#[derive(Default)]
struct Acc {
    sent: u64,
    written_in_window: u64,
    ok: u64,
    lat_ms: Vec<f64>,
    errors: BTreeMap<u16, u64>,
    messages: BTreeMap<String, u64>,
    requests: Vec<RequestSample>,
}

impl Acc {
    fn record(&mut self, o: Outcome, window_start: Instant, window_end: Instant) {
        self.sent += 1;
        self.requests.push(RequestSample {
            issued_s: o.issued.saturating_duration_since(window_start).as_secs_f64(),
            latency_ms: o.latency.as_secs_f64() * 1e3,
            status: o.status,
        });
        if o.written.is_some_and(|w| w <= window_end) {
            self.written_in_window += 1;
        }
        if o.status == 200 {
            self.ok += 1;
            self.lat_ms.push(o.latency.as_secs_f64() * 1e3);
        } else {
            *self.errors.entry(o.status).or_default() += 1;
            let msg = o.message.unwrap_or_else(|| "(no message)".into());
            let key = if o.status == 0 { msg } else { format!("{}: {msg}", o.status) };
            if self.messages.contains_key(&key) || self.messages.len() < MAX_MESSAGES {
                *self.messages.entry(key).or_default() += 1;
            } else {
                *self.messages.entry("(other messages)".into()).or_default() += 1;
            }
        }
    }
}

struct Ctx {
    client: Client,
    request: Bytes,
    timeout: Duration,
}

/// Sends the request once; waits first for `permit` (open loop) within the timeout.
async fn one(ctx: &Ctx, permits: Option<&Semaphore>) -> Outcome {
    let start = Instant::now();
    let mut written = None;
    let exchange = async {
        let _permit = match permits {
            Some(s) => Some(s.acquire().await.map_err(|_| "the run was stopped".to_string())?),
            None => None,
        };
        written = Some(Instant::now());
        ctx.client.send(&ctx.request).await
    };
    let result = tokio::time::timeout(ctx.timeout, exchange).await;
    let latency = start.elapsed();
    let (status, message) = match result {
        Err(_) => (0, Some(format!("no answer within the {} s timeout", ctx.timeout.as_secs_f64()))),
        Ok(Err(msg)) => (0, Some(msg)),
        Ok(Ok(r)) if r.status == 200 => match check_ok(&r) {
            Ok(()) => (200, None),
            Err(m) => (0, Some(m)),
        },
        Ok(Ok(r)) => (r.status, Some(error_text(&r.body))),
    };
    Outcome { status, latency, issued: start, written, message }
}

/// A cheap check that a 200 carries a KServe response (a JSON object first).
fn check_ok(r: &Response) -> Result<(), String> {
    let json_len = match r.header_length {
        Some(n) if n <= r.body.len() => n,
        Some(n) => return Err(format!("200 whose JSON part ({n} bytes) is longer than its body ({})", r.body.len())),
        None => r.body.len(),
    };
    let json = &r.body[..json_len];
    let first = json.iter().find(|b| !b.is_ascii_whitespace());
    let last = json.iter().rev().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') && last == Some(&b'}') {
        Ok(())
    } else {
        Err("200 whose body is not a KServe inference response".into())
    }
}

fn step_label(mode: Mode, v: f64) -> String {
    match mode {
        Mode::Rate => format!("rate {v}/s"),
        Mode::Concurrency => format!("concurrency {v}"),
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_step(
    ctx: &Arc<Ctx>,
    mode: Mode,
    value: f64,
    seed: u64,
    warmup: Duration,
    duration: Duration,
    max_inflight: usize,
    slo_ms: Option<f64>,
    label: &str,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<StepReport> {
    let acc = Arc::new(Mutex::new(Acc::default()));
    let t0 = Instant::now();
    let measure = t0 + warmup;
    let end = measure + duration;
    // In a JoinSet so that the requests stop if this future is dropped.
    let mut driver = JoinSet::new();
    match mode {
        Mode::Concurrency => driver.spawn(closed_loop(ctx.clone(), acc.clone(), value as usize, measure, end)),
        Mode::Rate => {
            driver.spawn(open_loop(ctx.clone(), acc.clone(), value, seed, max_inflight.max(1), t0, measure, end))
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            r = driver.join_next() => {
                match r {
                    Some(Err(e)) => bail!("the load generator of {label} failed: {e}"),
                    Some(Ok(Err(e))) => bail!("the load generator of {label} failed: {e}"),
                    _ => {}
                }
                break;
            }
            _ = tick.tick() => {
                let now = Instant::now();
                let msg = if now < measure {
                    format!("{label}: warm-up {:.0}/{:.0} s", (now - t0).as_secs_f64(), warmup.as_secs_f64())
                } else {
                    let a = acc.lock().unwrap_or_else(|p| p.into_inner());
                    let done = (now - measure).as_secs_f64().min(duration.as_secs_f64());
                    let tail = if now >= end { ", awaiting the last answers" } else { "" };
                    format!(
                        "{label}: {done:.0}/{:.0} s, {} answered, {} ok, {} errors{tail}",
                        duration.as_secs_f64(),
                        a.sent,
                        a.ok,
                        a.errors.values().sum::<u64>()
                    )
                };
                progress(&msg);
            }
        }
    }
    let acc = std::mem::take(&mut *acc.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(summarise(value, duration.as_secs_f64(), acc, slo_ms))
}

/// Waits for every task of `set`; a task that failed (a bug) is an error, never hidden.
async fn join_all(mut set: JoinSet<()>) -> Result<(), String> {
    let mut failed = None;
    while let Some(r) = set.join_next().await {
        if let Err(e) = r {
            failed.get_or_insert(format!("a request task failed: {e}"));
        }
    }
    failed.map_or(Ok(()), Err)
}

async fn closed_loop(
    ctx: Arc<Ctx>,
    acc: Arc<Mutex<Acc>>,
    c: usize,
    measure: Instant,
    end: Instant,
) -> Result<(), String> {
    let mut set = JoinSet::new();
    for _ in 0..c {
        let (ctx, acc) = (ctx.clone(), acc.clone());
        set.spawn(async move {
            loop {
                let issued = Instant::now();
                if issued >= end {
                    break;
                }
                let o = one(&ctx, None).await;
                let refused = o.status == 0 && o.written.is_some() && o.latency < ctx.timeout;
                if issued >= measure {
                    acc.lock().unwrap_or_else(|p| p.into_inner()).record(o, measure, end);
                }
                if refused {
                    // A failing server answers at once: do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        });
    }
    join_all(set).await
}

#[allow(clippy::too_many_arguments)]
async fn open_loop(
    ctx: Arc<Ctx>,
    acc: Arc<Mutex<Acc>>,
    rate: f64,
    seed: u64,
    max_inflight: usize,
    t0: Instant,
    measure: Instant,
    end: Instant,
) -> Result<(), String> {
    let permits = Arc::new(Semaphore::new(max_inflight));
    let mut rng = Rng::new(seed, 0);
    let mut set = JoinSet::new();
    let mut t = 0.0f64;
    loop {
        t += rng.exponential(1.0 / rate);
        let Some(at) = t0.checked_add(Duration::from_secs_f64(t)) else { break };
        if at >= end {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        let measured = at >= measure;
        let (ctx, acc, permits) = (ctx.clone(), acc.clone(), permits.clone());
        set.spawn(async move {
            let o = one(&ctx, Some(&permits)).await;
            if measured {
                acc.lock().unwrap_or_else(|p| p.into_inner()).record(o, measure, end);
            }
        });
        while let Some(r) = set.try_join_next() {
            r.map_err(|e| format!("a request task failed: {e}"))?;
        }
    }
    join_all(set).await
}

fn summarise(value: f64, duration_s: f64, mut acc: Acc, slo_ms: Option<f64>) -> StepReport {
    acc.lat_ms.sort_by(f64::total_cmp);
    let l = &acc.lat_ms;
    let latency_ms = (!l.is_empty()).then(|| Latency {
        p50: percentile(l, 0.50),
        p90: percentile(l, 0.90),
        p95: percentile(l, 0.95),
        p99: percentile(l, 0.99),
        mean: l.iter().sum::<f64>() / l.len() as f64,
        max: l[l.len() - 1],
    });
    let good = match slo_ms {
        Some(slo) => l.iter().filter(|&&x| x <= slo).count() as u64,
        None => acc.ok,
    };
    let throughput = acc.ok as f64 / duration_s;
    StepReport {
        value,
        duration_s,
        sent: acc.sent,
        ok: acc.ok,
        errors: acc.errors,
        error_messages: acc.messages,
        throughput,
        inferences_per_s: 0.0,
        send_rate: acc.written_in_window as f64 / duration_s,
        latency_ms,
        attainment: if acc.sent == 0 { 0.0 } else { good as f64 / acc.sent as f64 },
        requests: acc.requests,
    }
}

// ---------------------------------------------------------------------------------------------
// The run

/// GET `path`, within `timeout`: status and body.
async fn get(client: &Client, path: &str, timeout: Duration) -> Result<(u16, Vec<u8>)> {
    let req = client.request("GET", path, &[], b"");
    match tokio::time::timeout(timeout, client.send(&req)).await {
        Err(_) => bail!("GET {}{path}: no answer within {} s", client.target.base, timeout.as_secs_f64()),
        Ok(Err(e)) => bail!("{e}: is the server running, and is --url right?"),
        Ok(Ok(r)) => Ok((r.status, r.body)),
    }
}

/// Runs every step against the server. `progress` is called about once a second (and at each
/// step's start) with a line saying where the run is.
pub async fn run(args: &LoadArgs, progress: &(dyn Fn(&str) + Sync)) -> Result<LoadReport> {
    let (mode, values) = steps(args)?;
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if let Some(slo) = args.slo_ms
        && !(slo.is_finite() && slo > 0.0)
    {
        bail!("--slo-ms {slo} must be a positive number of milliseconds");
    }
    for (flag, v) in [("--duration", args.duration), ("--timeout", args.timeout), ("--warmup", args.warmup + 1.0)] {
        if !(v.is_finite() && v > 0.0 && v < 1e7) {
            bail!("{flag} must be a positive duration (e.g. 10s)");
        }
    }
    if args.model.is_empty() {
        bail!("--model is empty: give the name the server serves");
    }
    let target = parse_url(&args.url)?;
    let client = Client::new(target).await?;
    let timeout = Duration::from_secs_f64(args.timeout);
    let model_path = format!("/v2/models/{}", encode_segment(&args.model));
    let base = client.target.base.clone();

    let (status, body) = get(&client, &model_path, timeout).await?;
    let meta: serde_json::Value = match status {
        200 => serde_json::from_slice(&body).with_context(|| {
            format!("GET {base}{model_path} answered 200 without JSON metadata: is {base} a KServe v2 server?")
        })?,
        404 => bail!(
            "the server at {base} has no model '{}': check --model (the server says: {})",
            args.model,
            error_text(&body)
        ),
        s => bail!("GET {base}{model_path} answered {s}: {}", error_text(&body)),
    };
    let (status, body) = get(&client, &format!("{model_path}/ready"), timeout).await?;
    if status != 200 {
        bail!(
            "model '{}' at {base} is not ready (GET {model_path}/ready answered {status}: {}); wait for it or check the server",
            args.model,
            error_text(&body)
        );
    }
    let inputs = inputs_from_meta(&args.model, &meta, args.input_shape.as_ref().map(|s| s.0.as_slice()))?;
    let (body, header_length, shapes) = build_body(&inputs, args.batch, args.binary, args.seed)?;
    let mut headers = vec![(
        "Content-Type",
        if args.binary { "application/octet-stream".to_string() } else { "application/json".to_string() },
    )];
    if let Some(n) = header_length {
        headers.push((crate::serve::frontend::kserve::HEADER_LENGTH, n.to_string()));
    }
    let request = client.request("POST", &format!("{model_path}/infer"), &headers, &body);
    let ctx = Arc::new(Ctx { client, request, timeout });

    let mut reports = vec![];
    for (i, &v) in values.iter().enumerate() {
        let label = format!("{} ({}/{})", step_label(mode, v), i + 1, values.len());
        progress(&format!("{label}: starting"));
        let mut r = run_step(
            &ctx,
            mode,
            v,
            args.seed.wrapping_add(i as u64),
            Duration::from_secs_f64(args.warmup),
            Duration::from_secs_f64(args.duration),
            args.max_inflight,
            args.slo_ms,
            &label,
            progress,
        )
        .await?;
        r.inferences_per_s = r.throughput * args.batch as f64;
        reports.push(r);
    }
    Ok(LoadReport {
        url: base,
        model: args.model.clone(),
        mode,
        batch: args.batch,
        inputs: shapes.into_iter().map(|(name, shape)| InputSent { name, shape }).collect(),
        binary: args.binary,
        request_bytes: body.len(),
        slo_ms: args.slo_ms,
        seed: args.seed,
        steps: reports,
    })
}

/// Runs [`run`] on a fresh multi-threaded tokio runtime, with a progress bar on stderr unless
/// `quiet`.
pub fn run_blocking(args: &LoadArgs, quiet: bool) -> Result<LoadReport> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the tokio runtime")?;
    let n = steps(args).map(|(_, v)| v.len()).unwrap_or(1) as f64;
    let total = (n * (args.warmup + args.duration)).ceil().max(1.0) as u64;
    let pb = if quiet { indicatif::ProgressBar::hidden() } else { crate::progress(total, "load") };
    let started = Instant::now();
    let step = |msg: &str| {
        pb.set_position(started.elapsed().as_secs().min(total));
        pb.set_message(msg.to_string());
    };
    let report = rt.block_on(run(args, &step));
    pb.finish_and_clear();
    report
}

/// Writes [`csv`] of the report to `path`.
pub fn write_csv(report: &LoadReport, path: &std::path::Path) -> Result<()> {
    std::fs::write(path, csv(report)).with_context(|| format!("writing the CSV report {}", path.display()))
}

fn shape_text(s: &[usize]) -> String {
    s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x")
}

fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into())
}

/// The report as a table for people.
pub fn render(r: &LoadReport) -> String {
    let how = match r.mode {
        Mode::Rate => format!("open loop, Poisson arrivals (seed {})", r.seed),
        Mode::Concurrency => "closed loop".to_string(),
    };
    let inputs: Vec<String> = r.inputs.iter().map(|i| format!("{} {}", i.name, shape_text(&i.shape))).collect();
    let slo = r.slo_ms.map(|s| format!("SLO {s} ms")).unwrap_or_else(|| "no SLO".into());
    let mut s = format!(
        "load on {} model '{}': {how}, batch {}, {} ({}, {} bytes a request), {slo}\n\n",
        r.url,
        r.model,
        r.batch,
        inputs.join(", "),
        if r.binary { "binary tensors" } else { "JSON tensors" },
        r.request_bytes
    );
    let first = match r.mode {
        Mode::Rate => "rate/s",
        Mode::Concurrency => "conc",
    };
    s += &format!(
        "{first:>8} {:>7} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}\n",
        "sent", "ok", "errors", "ok/s", "sent/s", "p50 ms", "p90 ms", "p95 ms", "p99 ms", "mean ms", "max ms", "attain"
    );
    for st in &r.steps {
        let l = latency_cells(st.latency_ms);
        s += &format!(
            "{:>8} {:>7} {:>7} {:>7} {:>9.1} {:>9.1} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6.1}%\n",
            st.value,
            st.sent,
            st.ok,
            st.error_count(),
            st.throughput,
            st.send_rate,
            ms(l[0]),
            ms(l[1]),
            ms(l[2]),
            ms(l[3]),
            ms(l[4]),
            ms(l[5]),
            st.attainment * 100.0
        );
    }
    let failing: Vec<&StepReport> = r.steps.iter().filter(|st| st.error_count() > 0).collect();
    if !failing.is_empty() {
        s += "\nerrors (status 0: transport errors, malformed answers, timeouts):\n";
        for st in failing {
            let by_status: Vec<String> = st.errors.iter().map(|(k, v)| format!("{v} x {k}")).collect();
            s += &format!("  {}: {}\n", step_label(r.mode, st.value), by_status.join(", "));
            for (m, n) in &st.error_messages {
                s += &format!("    {n} x {m}\n");
            }
        }
    }
    s
}

/// p50, p90, p95, p99, mean and max of a step (none without successes).
fn latency_cells(l: Option<Latency>) -> [Option<f64>; 6] {
    l.map_or([None; 6], |l| [Some(l.p50), Some(l.p90), Some(l.p95), Some(l.p99), Some(l.mean), Some(l.max)])
}

/// The steps as CSV: a header line, then one row per step (perf_analyzer-like columns; Client
/// Send is the achieved send rate, Errors the failed requests, Attainment a fraction).
pub fn csv(r: &LoadReport) -> String {
    let first = match r.mode {
        Mode::Rate => "Request Rate (req/s)",
        Mode::Concurrency => "Concurrency",
    };
    let mut s = format!(
        "{first},Inferences/Second,Client Send (req/s),p50 latency (ms),p90 latency (ms),p95 latency (ms),\
         p99 latency (ms),Avg latency (ms),Max latency (ms),Sent,OK,Errors,Attainment\n"
    );
    let cell = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
    for st in &r.steps {
        let l = latency_cells(st.latency_ms);
        s += &format!(
            "{},{:.3},{:.3},{},{},{},{},{},{},{},{},{},{:.4}\n",
            st.value,
            st.inferences_per_s,
            st.send_rate,
            cell(l[0]),
            cell(l[1]),
            cell(l[2]),
            cell(l[3]),
            cell(l[4]),
            cell(l[5]),
            st.sent,
            st.ok,
            st.error_count(),
            st.attainment
        );
    }
    s
}

/// Runs `poolpipe load`.
pub fn command(a: LoadArgs) -> Result<()> {
    let report = run_blocking(&a, a.json)?;
    if let Some(path) = &a.csv {
        write_csv(&report, path)?;
    }
    crate::commands::print_report(&report, a.json, render)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::frontend::http::{Backend, HttpOptions, ModelMeta, TensorMeta, router};
    use crate::serve::frontend::kserve::{ApiError, InputTensor, OutputTensor};
    use clap::Parser;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Doubles its input; every `fail_every`-th request is answered 503, every `hang_every`-th
    /// never (0: none).
    #[derive(Clone, Default)]
    struct Doubler {
        fail_every: u64,
        hang_every: u64,
        n: Arc<AtomicU64>,
    }

    impl Backend for Doubler {
        fn models(&self) -> Vec<ModelMeta> {
            vec![ModelMeta {
                name: "double".into(),
                inputs: vec![TensorMeta { name: "frames".into(), shape: vec![3, 8, 8] }],
                outputs: vec![TensorMeta { name: "twice".into(), shape: vec![3, 8, 8] }],
            }]
        }
        fn ready(&self, _: &str) -> bool {
            true
        }
        async fn infer(&self, _: &str, inputs: Vec<InputTensor>) -> Result<Vec<OutputTensor>, ApiError> {
            let k = self.n.fetch_add(1, Ordering::Relaxed) + 1;
            if self.hang_every > 0 && k.is_multiple_of(self.hang_every) {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            if self.fail_every > 0 && k.is_multiple_of(self.fail_every) {
                return Err(ApiError { status: 503, message: "busy, try later".into(), retry_after_s: None });
            }
            let x = &inputs[0];
            Ok(vec![OutputTensor {
                name: "twice".into(),
                shape: x.shape.clone(),
                data: x.data.iter().map(|v| v * 2.0).collect(),
            }])
        }
    }

    /// Serves our router over `backend` on a free port; returns its base URL.
    async fn serve(backend: Doubler) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(backend, HttpOptions::default())).await });
        format!("http://{addr}")
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: LoadArgs,
    }

    fn parse(url: &str, extra: &str) -> std::result::Result<LoadArgs, clap::Error> {
        let mut argv = vec!["load", "--url", url, "--model", "double"];
        argv.extend(extra.split_whitespace());
        for (flag, default) in [("--duration", "400ms"), ("--warmup", "0")] {
            if !extra.contains(flag) {
                argv.extend([flag, default]);
            }
        }
        Cli::try_parse_from(argv).map(|c| c.args)
    }

    fn quiet(_: &str) {}

    /// Every request accounted for, some succeeded, latencies ordered.
    fn check(st: &StepReport) {
        assert_eq!(st.sent, st.ok + st.error_count(), "{st:?}");
        assert!(st.ok > 0, "{st:?}");
        let l = st.latency_ms.expect("latency of the successes");
        assert!(l.p50 <= l.p90 && l.p90 <= l.p95 && l.p95 <= l.p99 && l.p99 <= l.max, "{l:?}");
        assert!(l.mean > 0.0 && l.mean <= l.max, "{l:?}");
        assert!((0.0..=1.0).contains(&st.attainment));
    }

    #[tokio::test]
    async fn load_closed_loop_json() {
        let url = serve(Doubler::default()).await;
        let r = run(&parse(&url, "--concurrency 4").unwrap(), &quiet).await.unwrap();
        assert_eq!(r.mode, Mode::Concurrency);
        assert_eq!(r.inputs, vec![InputSent { name: "frames".into(), shape: vec![1, 3, 8, 8] }], "from the metadata");
        assert_eq!(r.steps.len(), 1);
        check(&r.steps[0]);
        assert_eq!(r.steps[0].error_count(), 0, "{:?}", r.steps[0].error_messages);
        assert_eq!(r.steps[0].attainment, 1.0);
        let table = render(&r);
        assert!(table.contains("closed loop") && table.contains("p99 ms"), "{table}");
    }

    #[tokio::test]
    async fn load_open_loop_binary() {
        let url = serve(Doubler::default()).await;
        let r = run(&parse(&url, "--rate 200 --binary --batch 2 --slo-ms 10000").unwrap(), &quiet).await.unwrap();
        assert_eq!(r.mode, Mode::Rate);
        assert!(r.binary);
        assert_eq!(r.inputs[0].shape, vec![2, 3, 8, 8]);
        let st = &r.steps[0];
        check(st);
        assert_eq!(st.error_count(), 0, "{:?}", st.error_messages);
        assert!(st.send_rate > 0.0);
        assert_eq!(st.inferences_per_s, st.throughput * 2.0);
    }

    #[tokio::test]
    async fn load_sweeps_write_one_csv_row_per_step() {
        let url = serve(Doubler::default()).await;
        let args = parse(&url, "--rate 5 --sweep 50,100 --duration 300ms --warmup 100ms --binary").unwrap();
        let r = run(&args, &quiet).await.unwrap();
        assert_eq!(r.steps.iter().map(|s| s.value).collect::<Vec<_>>(), vec![50.0, 100.0]);
        r.steps.iter().for_each(check);
        let text = csv(&r);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("Request Rate (req/s),Inferences/Second,Client Send"), "{text}");
        assert!(lines[0].contains("p50 latency (ms)") && lines[0].contains("Attainment"), "{text}");
        assert!(lines[1].starts_with("50,") && lines[2].starts_with("100,"), "{text}");
        assert!(lines.iter().all(|l| l.split(',').count() == 13), "{text}");
        let args = parse(&url, "--concurrency 1 --sweep 1,2 --duration 200ms").unwrap();
        let r = run(&args, &quiet).await.unwrap();
        assert!(csv(&r).starts_with("Concurrency,"));
        assert_eq!(csv(&r).lines().count(), 3);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["mode"], "concurrency");
        assert_eq!(json["steps"].as_array().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn load_counts_errors_by_status() {
        let url = serve(Doubler { fail_every: 3, ..Default::default() }).await;
        let r = run(&parse(&url, "--concurrency 2").unwrap(), &quiet).await.unwrap();
        let st = &r.steps[0];
        check(st);
        assert!(st.errors.get(&503).is_some_and(|&n| n > 0), "{st:?}");
        assert_eq!(st.errors.keys().collect::<Vec<_>>(), vec![&503], "{st:?}");
        assert!(st.error_messages.keys().any(|m| m.contains("503") && m.contains("busy")), "{st:?}");
        assert!(st.attainment < 1.0);
        assert!(render(&r).contains("busy, try later"));
        // A frame shape the model does not take: every request refused with 400, and said why.
        let r = run(&parse(&url, "--rate 100 --input-shape 3x4x4").unwrap(), &quiet).await.unwrap();
        let st = &r.steps[0];
        assert_eq!(st.sent, st.error_count());
        assert!(st.sent > 0 && st.ok == 0 && st.latency_ms.is_none(), "{st:?}");
        assert_eq!(st.errors.get(&400), Some(&st.sent), "{st:?}");
        assert!(st.error_messages.keys().any(|m| m.contains("shape")), "{st:?}");
        assert!(csv(&r).lines().nth(1).unwrap().contains(",,"), "no latency: empty cells");
    }

    #[tokio::test]
    async fn load_counts_timeouts_as_status_0() {
        let url = serve(Doubler { hang_every: 4, ..Default::default() }).await;
        let r = run(&parse(&url, "--concurrency 3 --timeout 150ms").unwrap(), &quiet).await.unwrap();
        let st = &r.steps[0];
        check(st);
        assert!(st.errors.get(&0).is_some_and(|&n| n > 0), "{st:?}");
        assert!(st.error_messages.keys().any(|m| m.contains("timeout")), "{st:?}");
    }

    #[tokio::test]
    async fn load_refuses_an_unknown_model_or_a_dead_server() {
        let url = serve(Doubler::default()).await;
        let mut args = parse(&url, "--concurrency 1").unwrap();
        args.model = "resnet/50".into();
        let e = format!("{:#}", run(&args, &quiet).await.unwrap_err());
        assert!(e.contains("no model 'resnet/50'") && e.contains("--model") && e.contains("double"), "{e}");
        // A port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = format!(
            "{:#}",
            run(&parse(&format!("http://127.0.0.1:{port}"), "--rate 1").unwrap(), &quiet).await.unwrap_err()
        );
        assert!(e.contains("cannot connect") && e.contains(&port.to_string()) && e.contains("--url"), "{e}");
        let e = format!("{:#}", run(&parse("https://127.0.0.1:1", "--rate 1").unwrap(), &quiet).await.unwrap_err());
        assert!(e.contains("https") && e.contains("proxy"), "{e}");
    }

    #[test]
    fn load_flags() {
        assert!(parse("http://h", "").is_err(), "one of --rate and --concurrency is required");
        assert!(parse("http://h", "--rate 1 --concurrency 2").is_err(), "not both");
        let a = parse("http://h", "--rate 5 --sweep 5,10,20 --duration 2m --timeout 500ms").unwrap();
        assert_eq!((a.duration, a.timeout, a.warmup), (120.0, 0.5, 0.0));
        assert_eq!(steps(&a).unwrap(), (Mode::Rate, vec![5.0, 10.0, 20.0]));
        let a = Cli::try_parse_from(["load", "--url", "http://h", "--model", "m", "--concurrency", "3"]).unwrap().args;
        assert_eq!((a.duration, a.warmup, a.timeout, a.batch, a.binary), (10.0, 1.0, 30.0, 1, false));
        assert_eq!(steps(&a).unwrap(), (Mode::Concurrency, vec![3.0]));
        let a = parse("http://h", "--concurrency 3 --sweep 1,2.5").unwrap();
        assert!(steps(&a).unwrap_err().to_string().contains("whole number"));
        assert!(steps(&parse("http://h", "--rate 0").unwrap()).is_err());
        assert!(steps(&parse("http://h", "--rate=-1").unwrap()).is_err());
        assert_eq!(
            parse("http://h", "--rate 1 --input-shape 3x64x64").unwrap().input_shape,
            Some(FrameShape(vec![3, 64, 64]))
        );
        assert!(parse("http://h", "--rate 1 --input-shape 3x0").is_err());
        assert!(parse("http://h", "--rate 1 --duration 0").is_err());
    }

    #[test]
    fn load_urls() {
        let t = parse_url("http://127.0.0.1:8000/").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.prefix.as_str(), t.base.as_str()),
            ("127.0.0.1", 8000, "", "http://127.0.0.1:8000")
        );
        let t = parse_url("HTTP://[::1]:9000/kserve/v2").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.prefix.as_str(), t.authority.as_str()),
            ("::1", 9000, "/kserve", "[::1]:9000")
        );
        assert_eq!(parse_url("http://example.com").unwrap().port, 80);
        for (bad, says) in [
            ("https://h:1", "TLS-terminating proxy"),
            ("grpc://h:1", "scheme 'grpc'"),
            ("127.0.0.1:8000", "http://127.0.0.1:8000"),
            ("http://h:99999", "not a port"),
            ("http://:80", "no host"),
            ("http://u:p@h:1", "credentials"),
            ("http://h:1/?x=1", "query"),
        ] {
            let e = parse_url(bad).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains("--url"), "{bad}: {e}");
        }
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
    }

    #[tokio::test]
    async fn load_reads_http_answers() {
        let mut buf = vec![];
        let mut r: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        let a = read_response(&mut r, &mut buf).await.unwrap();
        assert_eq!((a.status, a.body.as_slice(), a.keep_alive), (200, &b"{}"[..], true));
        let mut r: &[u8] =
            b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4;x=1\r\n{\"er\r\n3\r\nr\"}\r\n0\r\nT: 1\r\n\r\n";
        let a = read_response(&mut r, &mut buf).await.unwrap();
        assert_eq!((a.status, a.body.as_slice(), a.keep_alive), (503, &b"{\"err\"}"[..], false));
        let mut r: &[u8] = b"HTTP/1.0 200 OK\r\nInference-Header-Content-Length: 2\r\n\r\n{}abcd";
        let a = read_response(&mut r, &mut buf).await.unwrap();
        assert_eq!((a.body.len(), a.header_length, a.keep_alive), (6, Some(2), false));
        assert!(check_ok(&a).is_ok());
        let mut r: &[u8] = b"";
        let e = read_response(&mut r, &mut buf).await.unwrap_err();
        assert!(e.stale && e.msg.contains("without answering"));
        for (bad, says) in [
            (&b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}"[..], "middle of its answer"),
            (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x answer"),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "Content-Length"),
        ] {
            let mut r = bad;
            buf.clear();
            let e = read_response(&mut r, &mut buf).await.unwrap_err();
            assert!(e.msg.contains(says) && !e.stale, "{e:?}");
        }
        let not_kserve = Response { status: 200, body: b"<html>".to_vec(), header_length: None, keep_alive: true };
        assert!(check_ok(&not_kserve).is_err());
    }

    #[test]
    fn load_bodies_follow_kserve() {
        let inputs = vec![("frames".to_string(), vec![3, 2, 2])];
        for binary in [false, true] {
            let (body, n, shapes) = build_body(&inputs, 2, binary, 7).unwrap();
            assert_eq!(shapes[0].1, vec![2, 3, 2, 2]);
            let req = crate::serve::frontend::kserve::parse_request(&body, n, 1 << 20).unwrap();
            assert_eq!(req.inputs[0].shape, vec![2, 3, 2, 2]);
            assert!(req.inputs[0].data.iter().all(|x| (0.0..1.0).contains(x)));
            assert_eq!(req.binary_default, binary);
            assert_eq!(build_body(&inputs, 2, binary, 7).unwrap().0, body, "seeded");
        }
        assert!(build_body(&inputs, usize::MAX, false, 1).unwrap_err().to_string().contains("--batch"));
        let meta = serde_json::json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3, 4]}]});
        assert_eq!(inputs_from_meta("m", &meta, None).unwrap(), vec![("x".to_string(), vec![3, 4])]);
        assert_eq!(inputs_from_meta("m", &meta, Some(&[5])).unwrap()[0].1, vec![5]);
        let free = serde_json::json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3, -1, -1]}]});
        assert!(inputs_from_meta("m", &free, None).unwrap_err().to_string().contains("--input-shape"));
        let (sorted, p) = (vec![1.0, 2.0, 3.0, 4.0], percentile);
        assert_eq!((p(&sorted, 0.5), p(&sorted, 0.99), p(&sorted[..1], 0.5)), (2.0, 4.0, 1.0));
    }
}
