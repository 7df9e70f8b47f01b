//! What the roles tell each other beyond the transport's own messages: the model signatures
//! the API serves, the `spec` of a remote frontend's `attached` and `install` messages, the
//! route id that stands for the frontend, and the address a node advertises. Controller,
//! frontend and worker all depend on this module and it on none of them, so the roles form no
//! import circle (controller -> frontend -> protocol, spec <- worker).

use std::net::SocketAddr;

use anyhow::{Result, bail};
use poolpipe_dataplane::Layout;
use poolpipe_transport::endpoint::Node;
use serde::{Deserialize, Serialize};

use crate::serve::spec::Peer;

/// The worker id that stands for the frontend in routes: a route's last hop delivers the
/// model's outputs there.
pub const FRONTEND: u32 = 0;

/// A tensor of a model's signature.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct TensorMeta {
    /// Name.
    pub name: String,
    /// Shape without the batch dimension.
    pub shape: Vec<usize>,
}

/// What the API says about a model.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ModelMeta {
    /// Name used in paths.
    pub name: String,
    /// Inputs.
    pub inputs: Vec<TensorMeta>,
    /// Outputs.
    pub outputs: Vec<TensorMeta>,
}

/// The `spec` of `attached`: what a remote frontend serves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachedSpec {
    /// The served models, in plan order.
    pub models: Vec<ModelMeta>,
    /// The controller's configured batching policy (the frontend's default).
    pub policy: String,
    /// The controller's configured queue limit per model (`max_queue`; `None`: the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue: Option<usize>,
}

/// The `spec` of `install`: a plan as the frontend's scheduler needs it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallSpec {
    /// The layout the scheduler reserves on.
    pub layout: Layout,
    /// The worker id running each layout worker.
    pub nodes: Vec<u32>,
    /// The workers' addresses and certificate names.
    pub peers: Vec<Peer>,
}

/// The address peers send batches to: `advertise`, else the node's bound address, which must
/// then be a specific one (not 0.0.0.0). `who` names the node in the error.
pub fn advertised(node: &Node, advertise: Option<SocketAddr>, who: &str) -> Result<SocketAddr> {
    let bound = node.local_addr()?;
    match advertise {
        Some(a) => Ok(a),
        None if bound.ip().is_unspecified() => {
            bail!("{who} listens on {bound}: pass --advertise IP:PORT, the address peers reach it at")
        }
        None => Ok(bound),
    }
}
