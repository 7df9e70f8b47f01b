//! The policy catalog: the one place that turns the names users give (`ppipe`, `reactive`,
//! `triton`, `earliest-finish`, a `.wasm`/`.wat` file, `wasm:NAME` for a built-in guest) into
//! policies and schedulers. `poolpipe simulate`, the benchmarks, the controller and the
//! frontend all go through it.

use std::path::Path;

use poolpipe_policies::wasm::{Limits, WasmError, WasmModule};
use poolpipe_policies::{BatchingPolicy, ReservationPolicy, guests, native};

use crate::{DataplaneError, Layout, Scheduler};

/// The native batching policies, by name.
pub const NATIVE_BATCHING: [&str; 3] = ["ppipe", "reactive", "triton"];
/// The native reservation policy.
pub const NATIVE_RESERVATION: &str = "earliest-finish";

/// Why a policy could not be named, loaded or instantiated.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A batching policy name that is neither native nor WebAssembly.
    #[error("unknown batching policy '{0}': use ppipe, reactive, triton, a .wasm/.wat file or wasm:NAME")]
    UnknownBatching(String),
    /// A reservation policy name that is neither native nor WebAssembly.
    #[error("unknown reservation policy '{0}': use earliest-finish, a .wasm/.wat file or wasm:NAME")]
    UnknownReservation(String),
    /// `wasm:NAME` names no built-in guest.
    #[error("no built-in guest '{name}': the built-in guests are {known}")]
    UnknownGuest {
        /// The name given.
        name: String,
        /// The built-in guests.
        known: String,
    },
    /// A module without the export its role needs.
    #[error("policy {module}: exports no `{export}`, so it is no {role} policy")]
    MissingExport {
        /// The module's name.
        module: String,
        /// The export it lacks.
        export: &'static str,
        /// `batching` or `reservation`.
        role: &'static str,
    },
    /// The WebAssembly module failed to load, compile or instantiate.
    #[error(transparent)]
    Wasm(#[from] WasmError),
    /// The scheduler refused the layout.
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
}

/// Which policies a run uses, as the user names them.
#[derive(Clone, Debug)]
pub struct PolicySpec {
    /// Batching policy: `ppipe`, `reactive`, `triton`, a `.wasm`/`.wat` file, or `wasm:NAME`
    /// for a built-in guest (`wasm:ppipe`, `wasm:reactive`, `wasm:triton`).
    pub batching: String,
    /// Reservation policy: `earliest-finish`, a file, or `wasm:NAME` (`wasm:earliest_finish`,
    /// `wasm:same_server`).
    pub reservation: String,
    /// Configuration blob handed to WebAssembly policies' `init`.
    pub config: Vec<u8>,
    /// Native `triton`: maximum queue delay, microseconds (default: the plan's estimate).
    pub max_queue_delay_us: Option<f64>,
    /// Sandbox of WebAssembly policies.
    pub limits: Limits,
}

impl PolicySpec {
    /// A native batching policy with earliest-finish reservations.
    pub fn native(name: &str) -> PolicySpec {
        PolicySpec {
            batching: name.to_string(),
            reservation: NATIVE_RESERVATION.into(),
            config: vec![],
            max_queue_delay_us: None,
            limits: Limits::default(),
        }
    }
}

/// Policies loaded once (WebAssembly modules compiled), ready to build schedulers.
#[derive(Clone, Debug)]
pub struct Policies {
    spec: PolicySpec,
    batching: Option<WasmModule>,
    reservation: Option<WasmModule>,
}

fn is_wasm(name: &str) -> bool {
    name.starts_with("wasm:") || name.ends_with(".wasm") || name.ends_with(".wat")
}

fn module(name: &str, spec: &PolicySpec) -> Result<WasmModule, CatalogError> {
    Ok(match name.strip_prefix("wasm:") {
        Some(builtin) => {
            let bytes = guests::builtin(builtin).ok_or_else(|| CatalogError::UnknownGuest {
                name: builtin.to_string(),
                known: guests::ALL.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
            })?;
            WasmModule::from_bytes(&format!("{builtin}.wasm"), bytes, &spec.config, spec.limits.clone())?
        }
        None => WasmModule::load(Path::new(name), &spec.config, spec.limits.clone())?,
    })
}

fn batching_module(m: WasmModule) -> Result<WasmModule, CatalogError> {
    if !m.has_batching() {
        return Err(CatalogError::MissingExport {
            module: m.name().to_string(),
            export: "poolpipe_decide",
            role: "batching",
        });
    }
    Ok(m)
}

impl Policies {
    /// Checks the names and compiles the modules.
    pub fn load(spec: &PolicySpec) -> Result<Policies, CatalogError> {
        let batching = if is_wasm(&spec.batching) {
            Some(batching_module(module(&spec.batching, spec)?)?)
        } else if native::batching(&spec.batching).is_none() {
            return Err(CatalogError::UnknownBatching(spec.batching.clone()));
        } else {
            None
        };
        let reservation = if is_wasm(&spec.reservation) {
            let m = module(&spec.reservation, spec)?;
            if !m.has_reservation() {
                return Err(CatalogError::MissingExport {
                    module: m.name().to_string(),
                    export: "poolpipe_choose",
                    role: "reservation",
                });
            }
            Some(m)
        } else if spec.reservation != NATIVE_RESERVATION {
            return Err(CatalogError::UnknownReservation(spec.reservation.clone()));
        } else {
            None
        };
        Ok(Policies { spec: spec.clone(), batching, reservation })
    }

    /// A batching policy from a WebAssembly module's bytes (binary or WAT text), with
    /// earliest-finish reservations.
    pub fn from_wasm(name: &str, bytes: &[u8], limits: Limits) -> Result<Policies, CatalogError> {
        let m = batching_module(WasmModule::from_bytes(name, bytes, &[], limits.clone())?)?;
        let spec = PolicySpec { batching: name.to_string(), limits, ..PolicySpec::native("ppipe") };
        Ok(Policies { spec, batching: Some(m), reservation: None })
    }

    /// The batching policy's name as given.
    pub fn name(&self) -> &str {
        &self.spec.batching
    }

    /// Native policies by name.
    pub fn native(name: &str) -> Result<Policies, CatalogError> {
        Policies::load(&PolicySpec::native(name))
    }

    /// One batching policy for a model.
    pub fn batching_policy(&self) -> Result<Box<dyn BatchingPolicy>, CatalogError> {
        Ok(match &self.batching {
            Some(m) => m.batching()?.ok_or_else(|| CatalogError::MissingExport {
                module: m.name().to_string(),
                export: "poolpipe_decide",
                role: "batching",
            })?,
            None if self.spec.batching == "triton" => {
                Box::new(native::Triton { max_queue_delay_us: self.spec.max_queue_delay_us })
            }
            None => native::batching(&self.spec.batching)
                .ok_or_else(|| CatalogError::UnknownBatching(self.spec.batching.clone()))?,
        })
    }

    /// One batching policy per model of `layout`.
    pub fn batching(&self, layout: &Layout) -> Result<Vec<Box<dyn BatchingPolicy>>, CatalogError> {
        (0..layout.models.len()).map(|_| self.batching_policy()).collect()
    }

    /// The reservation policy.
    pub fn reservation(&self) -> Result<Box<dyn ReservationPolicy>, CatalogError> {
        Ok(match &self.reservation {
            Some(m) => m.reservation()?.ok_or_else(|| CatalogError::MissingExport {
                module: m.name().to_string(),
                export: "poolpipe_choose",
                role: "reservation",
            })?,
            None => Box::new(native::EarliestFinish),
        })
    }

    /// A scheduler over `layout` with these policies.
    pub fn scheduler(&self, layout: &Layout) -> Result<Scheduler, CatalogError> {
        Ok(Scheduler::new(layout.clone(), self.batching(layout)?, self.reservation()?)?)
    }
}

/// A scheduler over `layout` with the native batching policy `policy`.
pub fn scheduler(layout: &Layout, policy: &str) -> Result<Scheduler, CatalogError> {
    Policies::native(policy)?.scheduler(layout)
}
