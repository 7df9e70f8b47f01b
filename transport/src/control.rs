//! Control messages (PROTOCOL.md, "Control messages"): registration, stage assignment, timing
//! reports and health, a frontend's attachment and plan handover, each exchange on its own bidirectional stream: one message from the
//! opener, one reply. Frames of kind 2 whose body is one JSON object.
//!
//! The transport carries these messages; it does not act on them. What an assignment means
//! (which blocks, which plan) is the control plane's business: the `spec` field is opaque here.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::frame::{FrameError, FrameLimits, KIND_CONTROL, PREFIX, decode_prefix_of, with_prefix};

/// One control message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Control {
    /// A worker introduces itself to the controller.
    Register {
        /// The node name (its certificate's name).
        node: String,
        /// Its GPU class.
        class: String,
        /// Its device, in words.
        device: String,
        /// Where it accepts batch streams.
        data_addr: String,
    },
    /// The controller accepts a worker and gives it an id.
    Welcome {
        /// The worker id used in routes.
        worker: u32,
    },
    /// The controller assigns a stage of a model to a worker.
    Assign {
        /// The worker.
        worker: u32,
        /// The model id used in frames.
        model: u32,
        /// The stage index.
        stage: u16,
        /// Blocks `[first, end)` of the model this stage runs.
        blocks: [u32; 2],
        /// What else the control plane needs to say (opaque to the transport).
        #[serde(default)]
        spec: serde_json::Value,
    },
    /// A worker reports the actual timing of a batch (microseconds on its clock).
    Timing {
        /// The worker.
        worker: u32,
        /// The model.
        model: u32,
        /// The batch.
        batch: u64,
        /// The stage.
        stage: u16,
        /// Requests in the batch.
        requests: u32,
        /// When the batch arrived.
        arrived_us: f64,
        /// When compute started.
        start_us: f64,
        /// When compute ended.
        end_us: f64,
    },
    /// A worker could not run or forward a batch: the frontend answers its requests now
    /// instead of waiting for a result that will not come.
    Failed {
        /// The worker.
        worker: u32,
        /// The model.
        model: u32,
        /// The batch.
        batch: u64,
        /// The stage.
        stage: u16,
        /// What went wrong.
        reason: String,
    },
    /// A worker's periodic health report.
    Health {
        /// The worker.
        worker: u32,
        /// Report sequence number.
        seq: u64,
        /// Batches queued or running.
        in_flight: u32,
        /// Busy fraction since the last report.
        busy: f64,
    },
    /// A frontend attaches to the controller: it runs the scheduler, sends every batch's first
    /// hop and receives the last hop of every route at `data_addr`.
    Attach {
        /// The frontend's node name (its certificate's name).
        node: String,
        /// Where it accepts batch streams (results).
        data_addr: String,
    },
    /// The controller took the frontend; `spec` says what it serves (opaque to the transport).
    Attached {
        /// What the frontend serves.
        #[serde(default)]
        spec: serde_json::Value,
    },
    /// Controller to frontend: a plan change starts. New requests wait, the plan in service
    /// takes no more batches, and the answer comes once its batches finished (those still
    /// running after `timeout_ms` are failed, for retry under the next plan).
    Drain {
        /// Longest wait for the batches in flight.
        timeout_ms: u64,
    },
    /// Controller to frontend: serve plan `generation`; answered once it serves.
    Install {
        /// The controller's plan generation.
        generation: u64,
        /// The plan as the frontend needs it (opaque to the transport).
        #[serde(default)]
        spec: serde_json::Value,
    },
    /// Controller to frontend: no plan can serve now; requests are answered with the reason.
    NoPlan {
        /// Why, and what to do.
        reason: String,
    },
    /// Controller to frontend: a worker registered.
    WorkerUp {
        /// The worker.
        worker: u32,
    },
    /// Controller to frontend: a worker left; nothing more goes to it.
    WorkerDown {
        /// The worker.
        worker: u32,
        /// Why it is considered gone.
        reason: String,
    },
    /// Frontend to controller, periodically: frames arrived per model since it attached
    /// (the controller re-plans when the mix moves) and the workers' profile corrections
    /// (it re-plans when a class's profiles are off). Also the frontend's health report.
    Arrivals {
        /// Frames per model, in the order of the `attached` spec.
        by_model: Vec<u64>,
        /// Each worker's profile correction under the current plan (measured over profiled
        /// batch time); absent from frontends that predate it.
        #[serde(default)]
        corrections: Vec<NodeCorrection>,
    },
    /// The message was taken.
    Ack,
    /// The message was refused; the reason says why and what to do.
    Refused {
        /// Why.
        reason: String,
    },
}

/// A worker's profile correction as the frontend measured it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeCorrection {
    /// The worker's node id.
    pub worker: u32,
    /// Measured over profiled batch time (median of recent reports; 1 = as profiled).
    pub ratio: f64,
    /// Reports taken under the current plan.
    pub reports: u64,
}

impl Control {
    /// The message type as written on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            Control::Register { .. } => "register",
            Control::Welcome { .. } => "welcome",
            Control::Assign { .. } => "assign",
            Control::Timing { .. } => "timing",
            Control::Failed { .. } => "failed",
            Control::Health { .. } => "health",
            Control::Attach { .. } => "attach",
            Control::Attached { .. } => "attached",
            Control::Drain { .. } => "drain",
            Control::Install { .. } => "install",
            Control::NoPlan { .. } => "no_plan",
            Control::WorkerUp { .. } => "worker_up",
            Control::WorkerDown { .. } => "worker_down",
            Control::Arrivals { .. } => "arrivals",
            Control::Ack => "ack",
            Control::Refused { .. } => "refused",
        }
    }
}

/// Encodes a control message as a frame of kind 2.
pub fn encode_control(msg: &Control) -> Bytes {
    // Serialising these plain types cannot fail: no maps with non-string keys, no NaN.
    let body =
        serde_json::to_vec(msg).unwrap_or_else(|e| format!("{{\"type\":\"refused\",\"reason\":\"{e}\"}}").into_bytes());
    with_prefix(KIND_CONTROL, &body)
}

/// Decodes a control frame held in one buffer (the JSON body is bounded by
/// `limits.max_header`).
pub fn decode_control(frame: &[u8], limits: &FrameLimits) -> Result<Control, FrameError> {
    let len = decode_prefix_of(KIND_CONTROL, frame, limits)?;
    let body = &frame[PREFIX..];
    if body.len() < len {
        return Err(FrameError::Truncated { what: "the control message", need: len - body.len() });
    }
    if body.len() > len {
        return Err(FrameError::Malformed(format!("{} bytes after the control message", body.len() - len)));
    }
    serde_json::from_slice(body).map_err(|e| FrameError::Malformed(format!("control message: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Control> {
        vec![
            Control::Register {
                node: "worker-1".into(),
                class: "T4".into(),
                device: "lavapipe".into(),
                data_addr: "10.0.0.2:7000".into(),
            },
            Control::Welcome { worker: 3 },
            Control::Assign { worker: 3, model: 1, stage: 0, blocks: [0, 4], spec: serde_json::json!({"batch": 8}) },
            Control::Timing {
                worker: 3,
                model: 1,
                batch: 9,
                stage: 1,
                requests: 4,
                arrived_us: 1.0,
                start_us: 2.0,
                end_us: 3.5,
            },
            Control::Health { worker: 3, seq: 7, in_flight: 2, busy: 0.4 },
            Control::Failed { worker: 3, model: 1, batch: 9, stage: 1, reason: "stage 1 is not assigned".into() },
            Control::Attach { node: "frontend".into(), data_addr: "10.0.0.1:7500".into() },
            Control::Attached { spec: serde_json::json!({"models": []}) },
            Control::Drain { timeout_ms: 3000 },
            Control::Install { generation: 4, spec: serde_json::json!({"nodes": [1, 2]}) },
            Control::NoPlan { reason: "no worker".into() },
            Control::WorkerUp { worker: 2 },
            Control::WorkerDown { worker: 2, reason: "connection closed".into() },
            Control::Arrivals {
                by_model: vec![3, 0, 9],
                corrections: vec![NodeCorrection { worker: 2, ratio: 1.5, reports: 20 }],
            },
            Control::Ack,
            Control::Refused { reason: "unknown worker".into() },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for m in all() {
            let bytes = encode_control(&m);
            assert_eq!(decode_control(&bytes, &FrameLimits::default()).unwrap(), m, "{}", m.kind());
        }
    }

    #[test]
    fn bad_control_frames_are_refused_with_a_reason() {
        let limits = FrameLimits::default();
        let good = encode_control(&Control::Health { worker: 1, seq: 2, in_flight: 0, busy: 0.0 });
        let e = decode_control(&good[..good.len() - 1], &limits).unwrap_err();
        assert!(matches!(e, FrameError::Truncated { .. }), "{e}");
        let mut extra = good.to_vec();
        extra.push(b' ');
        assert!(matches!(decode_control(&extra, &limits).unwrap_err(), FrameError::Malformed(_)));
        let unknown = with_prefix(KIND_CONTROL, br#"{"type":"reboot"}"#);
        let e = decode_control(&unknown, &limits).unwrap_err();
        assert!(e.to_string().contains("reboot"), "{e}");
        let batch = crate::frame::with_prefix(crate::frame::KIND_BATCH, b"{}");
        assert_eq!(decode_control(&batch, &limits).unwrap_err(), FrameError::Kind { found: 1, expected: 2 });
        for cut in 0..good.len() {
            assert!(decode_control(&good[..cut], &limits).is_err());
        }
    }

    #[test]
    fn the_decoder_never_panics_on_damaged_input() {
        let limits = FrameLimits::default();
        for m in all() {
            let good = encode_control(&m).to_vec();
            for i in 0..good.len() {
                for v in [0u8, 1, b'"', b'{', b'}', 0x7f, 0xff] {
                    let mut bad = good.clone();
                    bad[i] = v;
                    if let Ok(back) = decode_control(&bad, &limits) {
                        // Whatever decodes re-encodes to a frame that decodes the same.
                        assert_eq!(decode_control(&encode_control(&back), &limits).unwrap(), back);
                    }
                }
            }
        }
    }
}
