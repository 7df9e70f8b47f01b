//! Adapters and devices.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::kernels::PipelineCache;
use crate::error::{EngineError, Result};

/// Limits of an adapter that matter for CNN kernels.
#[derive(Clone, Debug, Serialize)]
pub struct KeyLimits {
    /// Largest buffer, bytes.
    pub max_buffer_size: u64,
    /// Largest storage buffer binding, bytes.
    pub max_storage_buffer_binding_size: u64,
    /// Storage buffers per shader stage.
    pub max_storage_buffers_per_shader_stage: u32,
    /// Workgroups per dispatch dimension.
    pub max_compute_workgroups_per_dimension: u32,
    /// Invocations per workgroup.
    pub max_compute_invocations_per_workgroup: u32,
    /// Workgroup memory, bytes.
    pub max_compute_workgroup_storage_size: u32,
    /// GPU timestamp queries are available (exact kernel timing).
    pub timestamp_queries: bool,
    /// f16 arithmetic in shaders is available.
    pub shader_f16: bool,
}

/// An adapter as `poolpipe devices` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct AdapterDescription {
    /// Position in [`list_adapters`]; stable for a given machine and driver set.
    pub index: usize,
    /// Adapter name, e.g. "NVIDIA H100" or "llvmpipe (LLVM 15.0.6, 256 bits)".
    pub name: String,
    /// PCI vendor id.
    pub vendor_id: u32,
    /// Vendor name derived from the id.
    pub vendor: String,
    /// Backend: Vulkan, Metal, Dx12, Gl.
    pub backend: String,
    /// DiscreteGpu, IntegratedGpu, VirtualGpu, Cpu or Other.
    pub device_type: String,
    /// Driver name and version.
    pub driver: String,
    /// Key limits.
    pub limits: KeyLimits,
}

fn vendor_name(id: u32) -> &'static str {
    match id {
        0x10DE => "NVIDIA",
        0x1002 | 0x1022 => "AMD",
        0x8086 => "Intel",
        0x13B5 => "ARM",
        0x5143 => "Qualcomm",
        0x106B => "Apple",
        0x1010 => "ImgTec",
        0x10005 => "Mesa",
        0 => "unknown",
        _ => "other",
    }
}

fn rank_type(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    if std::env::var_os("WGPU_BACKEND").is_none() {
        desc.backends = wgpu::Backends::all();
    }
    wgpu::Instance::new(desc)
}

fn adapters() -> Vec<wgpu::Adapter> {
    let inst = instance();
    let mut list = pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()));
    // Deterministic order: best device type first, then backend, then name.
    list.sort_by_key(|a| {
        let i = a.get_info();
        (rank_type(i.device_type), i.backend as u8, i.name.clone())
    });
    list
}

fn describe(index: usize, a: &wgpu::Adapter) -> AdapterDescription {
    let i = a.get_info();
    let l = a.limits();
    let f = a.features();
    AdapterDescription {
        index,
        name: i.name.clone(),
        vendor_id: i.vendor,
        vendor: vendor_name(i.vendor).to_string(),
        backend: format!("{:?}", i.backend),
        device_type: format!("{:?}", i.device_type),
        driver: format!("{} {}", i.driver, i.driver_info).trim().to_string(),
        limits: KeyLimits {
            max_buffer_size: l.max_buffer_size,
            max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
            max_storage_buffers_per_shader_stage: l.max_storage_buffers_per_shader_stage,
            max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
            max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
            max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
            timestamp_queries: f.contains(wgpu::Features::TIMESTAMP_QUERY),
            shader_f16: f.contains(wgpu::Features::SHADER_F16),
        },
    }
}

/// Every adapter of every backend wgpu was built with, best device type first.
pub fn list_adapters() -> Vec<AdapterDescription> {
    adapters().iter().enumerate().map(|(i, a)| describe(i, a)).collect()
}

/// Which adapter to open.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum AdapterSelector {
    /// The first adapter of [`list_adapters`] (discrete GPUs first, CPU last).
    #[default]
    Default,
    /// By position in [`list_adapters`].
    Index(usize),
    /// The first adapter whose name contains this text (case-insensitive).
    Name(String),
    /// The first adapter of this vendor (nvidia, amd, intel, apple, mesa, ...).
    Vendor(String),
    /// The first adapter of this device type (discrete, integrated, virtual, cpu).
    Type(String),
}

impl FromStr for AdapterSelector {
    type Err = std::convert::Infallible;

    /// `default`, an index (`0`), `vendor:nvidia`, `type:cpu`, `name:llvmpipe`, or any other
    /// text as a name substring.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let s = s.trim();
        Ok(if s.is_empty() || s.eq_ignore_ascii_case("default") {
            AdapterSelector::Default
        } else if let Ok(i) = s.parse::<usize>() {
            AdapterSelector::Index(i)
        } else if let Some(v) = s.strip_prefix("vendor:") {
            AdapterSelector::Vendor(v.to_string())
        } else if let Some(v) = s.strip_prefix("type:") {
            AdapterSelector::Type(v.to_string())
        } else if let Some(v) = s.strip_prefix("name:") {
            AdapterSelector::Name(v.to_string())
        } else {
            AdapterSelector::Name(s.to_string())
        })
    }
}

impl fmt::Display for AdapterSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdapterSelector::Default => write!(f, "default"),
            AdapterSelector::Index(i) => write!(f, "{i}"),
            AdapterSelector::Name(n) => write!(f, "name:{n}"),
            AdapterSelector::Vendor(v) => write!(f, "vendor:{v}"),
            AdapterSelector::Type(t) => write!(f, "type:{t}"),
        }
    }
}

impl AdapterSelector {
    fn matches(&self, d: &AdapterDescription) -> bool {
        let has = |hay: &str, needle: &str| hay.to_lowercase().contains(&needle.to_lowercase());
        match self {
            AdapterSelector::Default => true,
            AdapterSelector::Index(i) => d.index == *i,
            AdapterSelector::Name(n) => has(&d.name, n),
            AdapterSelector::Vendor(v) => {
                has(&d.vendor, v) || (v.eq_ignore_ascii_case("mesa") && has(&d.name, "llvmpipe"))
            }
            AdapterSelector::Type(t) => has(&d.device_type, t),
        }
    }
}

/// Something the GPU reported outside an error scope (kept to turn into errors later).
type ErrorLog = Arc<Mutex<Vec<String>>>;

pub(crate) struct DeviceInner {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) info: AdapterDescription,
    pub(crate) limits: wgpu::Limits,
    pub(crate) timestamps: bool,
    pub(crate) pipelines: PipelineCache,
    pub(crate) uncaptured: ErrorLog,
}

/// A wgpu device on one adapter with its pipeline cache. Cheap to clone (shared). Several
/// devices may be open at once, on different adapters or on the same one.
#[derive(Clone)]
pub struct Device {
    pub(crate) inner: Arc<DeviceInner>,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device").field("adapter", &self.inner.info.name).finish()
    }
}

impl Device {
    /// Opens a device on the adapter chosen by `selector`.
    pub fn open(selector: &AdapterSelector) -> Result<Device> {
        let list = adapters();
        if list.is_empty() {
            return Err(EngineError::NoAdapter);
        }
        let descs: Vec<AdapterDescription> = list.iter().enumerate().map(|(i, a)| describe(i, a)).collect();
        let Some(pos) = descs.iter().position(|d| selector.matches(d)) else {
            return Err(EngineError::AdapterNotFound {
                selector: selector.to_string(),
                available: descs
                    .iter()
                    .map(|d| format!("[{}] {} ({}, {})", d.index, d.name, d.backend, d.device_type))
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        };
        let adapter = &list[pos];
        let info = descs[pos].clone();
        let mut features = wgpu::Features::empty();
        if info.limits.timestamp_queries {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("poolpipe"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| EngineError::RequestDevice { adapter: info.name.clone(), reason: e.to_string() })?;
        let uncaptured: ErrorLog = Arc::default();
        let log = uncaptured.clone();
        let name = info.name.clone();
        // wgpu's default handler panics; record the error instead and report it from the
        // next call that checks.
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            tracing::error!(device = %name, "GPU error: {e}");
            log.lock().expect("error log poisoned").push(e.to_string());
        }));
        Ok(Device {
            inner: Arc::new(DeviceInner {
                device,
                queue,
                timestamps: info.limits.timestamp_queries,
                info,
                limits,
                pipelines: PipelineCache::default(),
                uncaptured,
            }),
        })
    }

    /// The adapter this device runs on.
    pub fn adapter(&self) -> &AdapterDescription {
        &self.inner.info
    }

    /// Name of the adapter.
    pub fn name(&self) -> &str {
        &self.inner.info.name
    }

    /// True when kernels can be timed with GPU timestamps.
    pub fn has_timestamps(&self) -> bool {
        self.inner.timestamps
    }
}

impl DeviceInner {
    /// Takes the errors reported outside error scopes since the last call.
    pub(crate) fn take_uncaptured(&self) -> Option<String> {
        let mut log = self.uncaptured.lock().expect("error log poisoned");
        if log.is_empty() {
            None
        } else {
            let all = log.join("; ");
            log.clear();
            Some(all)
        }
    }
}
