//! WebAssembly policies: loading, the host imports of ABI v2 (`policies/ABI.md`; modules of
//! ABI v1 load as they are), and the sandbox (a deadline per decision by epoch interruption,
//! a memory cap, optional fuel).
//!
//! The deadline is wall-clock time with a preemption allowance: a call still running when its
//! deadline passes is stopped once it has used another deadline's worth of its thread's CPU
//! time from then on (checked every [`TICK`]). A runaway guest is stopped after one to two
//! deadlines; a call the operating system preempted on a loaded machine finishes. Where the
//! thread's CPU time cannot be read, the call is stopped at the deadline.
//!
//! A module is compiled once ([`WasmModule::load`]); every batching or reservation policy made
//! from it ([`WasmModule::batching`], [`WasmModule::reservation`]) is its own instance with its
//! own store and memory, initialised with the module's configuration blob. A call that traps,
//! runs past its deadline, exceeds its memory or breaks the ABI returns a [`PolicyFailure`]
//! naming the module and the reason; the scheduler then unloads the policy.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::{
    Caller, Config, Engine, Instance, Linker, Module, Store, StoreLimits, StoreLimitsBuilder, Trap, TypedFunc,
    UpdateDeadline,
};

use crate::{Action, BatchingPolicy, Candidate, PolicyFailure, QueueHost, ReservationPolicy, Routing};

/// The ABI version marker of the current ABI (a function `() -> i32` returning 1).
pub const ABI_MARKER: &str = "poolpipe_policy_abi_v2";
/// The markers a module may export, newest first: a module exports one of them.
pub const ABI_MARKERS: [&str; 2] = ["poolpipe_policy_abi_v2", "poolpipe_policy_abi_v1"];
/// Host functions ABI v2 added: a module of ABI v1 may not import them.
pub const V2_IMPORTS: [&str; 3] = ["arrival_rate", "throughput", "candidate_output_ready"];
/// The import module name of the host functions.
pub const IMPORT_MODULE: &str = "poolpipe";

/// Errors of loading a policy module.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    /// The file cannot be read.
    #[error("policy {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The module does not compile, link or initialise, or breaks the ABI.
    #[error("policy {name}: {reason}")]
    Invalid {
        /// Module name (file name).
        name: String,
        /// What is wrong and what to do.
        reason: String,
    },
}

/// Sandbox limits of every call into a policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Wall-clock budget of one decision (epoch interruption, checked every [`TICK`]); a call
    /// past it is stopped once it has used as much again of its thread's CPU time (see the
    /// module docs).
    pub deadline: Duration,
    /// Largest linear memory, bytes.
    pub memory_bytes: usize,
    /// Fuel per decision (wasm instructions, roughly), for deterministic limits; `None`: no
    /// fuel metering.
    pub fuel: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { deadline: Duration::from_millis(1), memory_bytes: 16 << 20, fuel: None }
    }
}

/// Most entries of a guest's table (a function table of a few hundred entries is typical;
/// an unbounded one would take the host's memory outside the memory cap).
pub const TABLE_ELEMENTS: usize = 1 << 16;
/// Most tables of a guest.
pub const TABLES: usize = 4;

/// Period of the epoch ticker that enforces deadlines.
pub const TICK: Duration = Duration::from_micros(500);

/// Budget of loading an instance (instantiation, the ABI marker, `init`, `poolpipe_routing`),
/// under the same preemption allowance as the calls' deadline: `init` may parse a
/// configuration, and a loop there still ends as a clear error.
pub const LOAD_BUDGET: Duration = Duration::from_millis(100);

/// CPU time the calling thread has used, where the platform tells.
fn thread_cpu() -> Option<Duration> {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid, writable timespec; the call only writes it.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Epoch ticks that cover `budget`.
fn ticks(budget: Duration) -> u64 {
    (budget.as_nanos() / TICK.as_nanos()).max(1) as u64 + 1
}

/// The engines (with and without fuel), and the ticker thread that advances their epochs.
fn engine(fuel: bool) -> Result<Engine, String> {
    static ENGINES: OnceLock<Result<(Engine, Engine), String>> = OnceLock::new();
    let pair = ENGINES.get_or_init(|| {
        let make = |fuel: bool| {
            let mut c = Config::new();
            c.epoch_interruption(true);
            c.consume_fuel(fuel);
            Engine::new(&c).map_err(|e| format!("cannot start the WebAssembly engine: {e}"))
        };
        let pair = (make(false)?, make(true)?);
        let (a, b) = (pair.0.clone(), pair.1.clone());
        std::thread::Builder::new()
            .name("policy-epoch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(TICK);
                    a.increment_epoch();
                    b.increment_epoch();
                }
            })
            .map_err(|e| format!("cannot start the policy deadline thread: {e}"))?;
        Ok(pair)
    });
    match pair {
        Ok((plain, fueled)) => Ok(if fuel { fueled.clone() } else { plain.clone() }),
        Err(e) => Err(e.clone()),
    }
}

/// What the host functions see during a call.
struct State {
    /// The queue of the decision in progress (set only during `decide`).
    host: Option<*mut (dyn QueueHost + 'static)>,
    /// The candidates of the choice in progress (set only during `choose`).
    candidates: Option<*const [Candidate]>,
    /// The action the guest asked for.
    action: Option<Action>,
    /// An ABI violation seen in a host call (reported after the call).
    fault: Option<String>,
    limits: StoreLimits,
    name: Arc<str>,
    /// CPU time a call may use once its deadline passed (the preemption allowance): the load
    /// budget while loading, then the calls' deadline.
    budget: Duration,
    /// The thread's CPU time when the current call's deadline passed.
    overran_at: Option<Duration>,
}

// SAFETY: the raw pointers are set only for the duration of one synchronous call into the
// guest from the thread that owns the policy, and cleared before the call returns; the store
// is never used from another thread while they are set.
unsafe impl Send for State {}

impl State {
    fn queue(&mut self) -> Result<&mut dyn QueueHost, wasmtime::Error> {
        match self.host {
            // SAFETY: see `unsafe impl Send`: valid for the duration of the current call.
            Some(p) => Ok(unsafe { &mut *p }),
            None => Err(wasmtime::Error::msg("a queue function was called outside a batching decision")),
        }
    }

    fn candidate(&self, i: i32) -> Result<Candidate, wasmtime::Error> {
        let list = match self.candidates {
            // SAFETY: as above.
            Some(p) => unsafe { &*p },
            None => return Err(wasmtime::Error::msg("a candidate function was called outside a reservation choice")),
        };
        usize::try_from(i)
            .ok()
            .and_then(|i| list.get(i).copied())
            .ok_or_else(|| wasmtime::Error::msg(format!("candidate {i} of {}", list.len())))
    }

    fn act(&mut self, action: Action) {
        if self.action.is_some() {
            self.fault = Some("asked for two actions in one decision".into());
        }
        self.action = Some(action);
    }
}

fn index(i: i32) -> usize {
    usize::try_from(i).unwrap_or(usize::MAX)
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The host functions of ABI v2 (those of v1 and `arrival_rate`, `throughput`).
fn linker(engine: &Engine) -> Result<Linker<State>, wasmtime::Error> {
    let mut l: Linker<State> = Linker::new(engine);
    let m = IMPORT_MODULE;
    l.func_wrap(m, "now", |mut c: Caller<'_, State>| -> wasmtime::Result<f64> { Ok(c.data_mut().queue()?.now()) })?;
    l.func_wrap(m, "queue_len", |mut c: Caller<'_, State>| -> wasmtime::Result<i32> {
        Ok(count(c.data_mut().queue()?.queue_len()))
    })?;
    l.func_wrap(m, "arrival", |mut c: Caller<'_, State>, i: i32| -> wasmtime::Result<f64> {
        Ok(c.data_mut().queue()?.arrival(index(i)))
    })?;
    l.func_wrap(m, "enqueued", |mut c: Caller<'_, State>, i: i32| -> wasmtime::Result<f64> {
        Ok(c.data_mut().queue()?.enqueued(index(i)))
    })?;
    l.func_wrap(m, "deadline", |mut c: Caller<'_, State>, i: i32| -> wasmtime::Result<f64> {
        Ok(c.data_mut().queue()?.deadline(index(i)))
    })?;
    l.func_wrap(m, "first_look", |mut c: Caller<'_, State>| -> wasmtime::Result<i32> {
        Ok(c.data_mut().queue()?.first_look() as i32)
    })?;
    l.func_wrap(m, "lanes", |mut c: Caller<'_, State>| -> wasmtime::Result<i32> {
        Ok(count(c.data_mut().queue()?.lanes()))
    })?;
    l.func_wrap(m, "planned_batch", |mut c: Caller<'_, State>, lane: i32| -> wasmtime::Result<i32> {
        Ok(count(c.data_mut().queue()?.planned_batch(index(lane))))
    })?;
    l.func_wrap(m, "batch_build", |mut c: Caller<'_, State>, lane: i32| -> wasmtime::Result<f64> {
        Ok(c.data_mut().queue()?.batch_build(index(lane)))
    })?;
    l.func_wrap(m, "latency", |mut c: Caller<'_, State>, lane: i32, batch: i32| -> wasmtime::Result<f64> {
        Ok(c.data_mut().queue()?.latency(index(lane), index(batch)))
    })?;
    l.func_wrap(m, "idle_workers", |mut c: Caller<'_, State>, lane: i32| -> wasmtime::Result<i32> {
        Ok(count(c.data_mut().queue()?.idle_workers(index(lane))))
    })?;
    l.func_wrap(m, "probe_finish", |mut c: Caller<'_, State>, lane: i32, batch: i32| -> wasmtime::Result<f64> {
        Ok(c.data_mut().queue()?.probe(index(lane), index(batch)).finish)
    })?;
    l.func_wrap(m, "arrival_rate", |mut c: Caller<'_, State>| -> wasmtime::Result<f64> {
        Ok(c.data_mut().queue()?.arrival_rate())
    })?;
    l.func_wrap(m, "throughput", |mut c: Caller<'_, State>, lane: i32, batch: i32| -> wasmtime::Result<f64> {
        Ok(c.data_mut().queue()?.throughput(index(lane), index(batch)))
    })?;
    l.func_wrap(m, "probe_wait", |mut c: Caller<'_, State>, lane: i32, batch: i32| -> wasmtime::Result<f64> {
        Ok(c.data_mut().queue()?.probe(index(lane), index(batch)).wait)
    })?;
    l.func_wrap(m, "dispatch", |mut c: Caller<'_, State>, lane: i32, batch: i32| -> wasmtime::Result<()> {
        c.data_mut().queue()?;
        c.data_mut().act(Action::Dispatch { lane: index(lane), batch: index(batch) });
        Ok(())
    })?;
    l.func_wrap(m, "wait_until", |mut c: Caller<'_, State>, until: f64| -> wasmtime::Result<()> {
        c.data_mut().queue()?;
        c.data_mut().act(Action::Wait { until });
        Ok(())
    })?;
    l.func_wrap(m, "drop_head", |mut c: Caller<'_, State>, n: i32| -> wasmtime::Result<()> {
        c.data_mut().queue()?;
        c.data_mut().act(Action::Drop { count: index(n) });
        Ok(())
    })?;
    l.func_wrap(m, "candidates", |c: Caller<'_, State>| -> wasmtime::Result<i32> {
        match c.data().candidates {
            // SAFETY: as in `State::candidate`.
            Some(p) => Ok(count(unsafe { &*p }.len())),
            None => Err(wasmtime::Error::msg("candidates() was called outside a reservation choice")),
        }
    })?;
    l.func_wrap(m, "candidate_worker", |c: Caller<'_, State>, i: i32| -> wasmtime::Result<i32> {
        Ok(c.data().candidate(i)?.worker as i32)
    })?;
    l.func_wrap(m, "candidate_transfer_start", |c: Caller<'_, State>, i: i32| -> wasmtime::Result<f64> {
        Ok(c.data().candidate(i)?.transfer_start)
    })?;
    l.func_wrap(m, "candidate_transfer_end", |c: Caller<'_, State>, i: i32| -> wasmtime::Result<f64> {
        Ok(c.data().candidate(i)?.transfer_end)
    })?;
    l.func_wrap(m, "candidate_start", |c: Caller<'_, State>, i: i32| -> wasmtime::Result<f64> {
        Ok(c.data().candidate(i)?.start)
    })?;
    l.func_wrap(m, "candidate_finish", |c: Caller<'_, State>, i: i32| -> wasmtime::Result<f64> {
        Ok(c.data().candidate(i)?.finish)
    })?;
    l.func_wrap(m, "candidate_output_ready", |c: Caller<'_, State>, i: i32| -> wasmtime::Result<f64> {
        Ok(c.data().candidate(i)?.output_ready)
    })?;
    l.func_wrap(m, "candidate_same_server", |c: Caller<'_, State>, i: i32| -> wasmtime::Result<i32> {
        Ok(c.data().candidate(i)?.same_server as i32)
    })?;
    l.func_wrap(m, "log", |mut c: Caller<'_, State>, ptr: i32, len: i32| -> wasmtime::Result<()> {
        let name = c.data().name.clone();
        let Some(mem) = c.get_export("memory").and_then(|e| e.into_memory()) else {
            return Err(wasmtime::Error::msg("`log` called by a module that exports no `memory`"));
        };
        let (start, len) = (index(ptr), index(len).min(1024));
        let data = mem.data(&c);
        // Out of range is the guest's bug: a trap, not a silent skip.
        let Some(bytes) = start.checked_add(len).and_then(|end| data.get(start..end)) else {
            return Err(wasmtime::Error::msg(format!(
                "`log({ptr}, {len})` reaches outside the guest's memory of {} bytes",
                data.len()
            )));
        };
        tracing::info!(policy = %name, "{}", String::from_utf8_lossy(bytes));
        Ok(())
    })?;
    Ok(l)
}

/// A compiled policy module.
#[derive(Clone)]
pub struct WasmModule {
    name: Arc<str>,
    engine: Engine,
    module: Module,
    linker: Arc<Linker<State>>,
    config: Vec<u8>,
    limits: Limits,
    routing: Routing,
    decides: bool,
    chooses: bool,
    /// The ABI marker the module exports.
    marker: &'static str,
}

impl std::fmt::Debug for WasmModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmModule").field("name", &self.name).field("limits", &self.limits).finish_non_exhaustive()
    }
}

/// One instance of a module: a store, its exports, and the name for errors.
struct Running {
    name: Arc<str>,
    store: Store<State>,
    limits: Limits,
    decide: Option<TypedFunc<(), i32>>,
    choose: Option<TypedFunc<(), i32>>,
    routing: Routing,
}

/// Turns a failure into words; `budget` is the time limit in effect and its name (a call's
/// deadline, or the load budget while loading).
fn describe(name: &str, e: &wasmtime::Error, limits: &Limits, budget: (&str, Duration)) -> String {
    if let Some(trap) = e.downcast_ref::<Trap>() {
        return match trap {
            Trap::Interrupt => format!("policy {name} ran past its {} of {:?}", budget.0, budget.1),
            Trap::OutOfFuel => format!("policy {name} ran out of its fuel of {:?}", limits.fuel),
            Trap::MemoryOutOfBounds => format!("policy {name} read or wrote outside its memory"),
            other => format!("policy {name} trapped: {other}"),
        };
    }
    let text = format!("{e:#}");
    if text.contains("table") && (text.contains("limit") || text.contains("growing")) {
        return format!("policy {name} asked for a table of more than {TABLE_ELEMENTS} entries");
    }
    if text.contains("memory") && text.contains("limit") || text.contains("forcing trap when growing memory") {
        return format!("policy {name} asked for more than its {} bytes of memory", limits.memory_bytes);
    }
    format!("policy {name} failed: {text}")
}

impl WasmModule {
    /// Loads a `.wasm` or `.wat` file.
    pub fn load(path: &Path, config: &[u8], limits: Limits) -> Result<WasmModule, WasmError> {
        let bytes = std::fs::read(path).map_err(|source| WasmError::Io { path: path.display().to_string(), source })?;
        let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        WasmModule::from_bytes(&name, &bytes, config, limits)
    }

    /// Compiles a module from its bytes (binary or text) and checks its ABI by instantiating
    /// and initialising it once.
    pub fn from_bytes(name: &str, bytes: &[u8], config: &[u8], limits: Limits) -> Result<WasmModule, WasmError> {
        let invalid = |reason: String| WasmError::Invalid { name: name.to_string(), reason };
        let engine = engine(limits.fuel.is_some()).map_err(invalid)?;
        let module = Module::new(&engine, bytes).map_err(|e| invalid(format!("does not compile: {e:#}")))?;
        let linker = Arc::new(linker(&engine).map_err(|e| invalid(format!("host functions: {e:#}")))?);
        let has = |export: &str| module.get_export(export).is_some();
        let Some(marker) = ABI_MARKERS.into_iter().find(|m| has(m)) else {
            return Err(invalid(format!(
                "exports no ABI marker ({}): not a poolpipe policy of a supported ABI (see policies/ABI.md)",
                ABI_MARKERS.map(|m| format!("`{m}`")).join(" or ")
            )));
        };
        if marker != ABI_MARKER {
            let newer: Vec<String> = module
                .imports()
                .filter(|i| i.module() == IMPORT_MODULE && V2_IMPORTS.contains(&i.name()))
                .map(|i| format!("`{}`", i.name()))
                .collect();
            if !newer.is_empty() {
                return Err(invalid(format!(
                    "exports `{marker}` but imports {}, which ABI v2 added: export `{ABI_MARKER}` instead",
                    newer.join(", ")
                )));
            }
        }
        let (decides, chooses) = (has("poolpipe_decide"), has("poolpipe_choose"));
        if !decides && !chooses {
            return Err(invalid(
                "exports neither `poolpipe_decide` nor `poolpipe_choose`: it implements no policy".into(),
            ));
        }
        let mut m = WasmModule {
            name: name.into(),
            engine,
            module,
            linker,
            config: config.to_vec(),
            limits,
            routing: Routing::Reserved,
            decides,
            chooses,
            marker,
        };
        m.routing = m.instantiate().map_err(invalid)?.routing;
        Ok(m)
    }

    /// The module's name (its file name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The ABI version the module was written for (1 or 2).
    pub fn abi_version(&self) -> u32 {
        if self.marker == ABI_MARKER { 2 } else { 1 }
    }

    /// Whether it implements a batching policy (exports `poolpipe_decide`).
    pub fn has_batching(&self) -> bool {
        self.decides
    }

    /// Whether it implements a reservation policy (exports `poolpipe_choose`).
    pub fn has_reservation(&self) -> bool {
        self.chooses
    }

    /// A fresh batching policy from this module (its own instance), when it has one.
    pub fn batching(&self) -> Result<Option<Box<dyn BatchingPolicy>>, WasmError> {
        if !self.decides {
            return Ok(None);
        }
        let running =
            self.instantiate().map_err(|reason| WasmError::Invalid { name: self.name.to_string(), reason })?;
        Ok(Some(Box::new(WasmBatching { running, routing: self.routing })))
    }

    /// A fresh reservation policy from this module, when it has one.
    pub fn reservation(&self) -> Result<Option<Box<dyn ReservationPolicy>>, WasmError> {
        if !self.chooses {
            return Ok(None);
        }
        let running =
            self.instantiate().map_err(|reason| WasmError::Invalid { name: self.name.to_string(), reason })?;
        Ok(Some(Box::new(WasmReservation { running })))
    }

    fn instantiate(&self) -> Result<Running, String> {
        let name = &self.name;
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_bytes)
            .table_elements(TABLE_ELEMENTS)
            .tables(TABLES)
            .memories(1)
            .instances(1)
            .trap_on_grow_failure(true)
            .build();
        let load_budget = LOAD_BUDGET.max(self.limits.deadline);
        let state = State {
            host: None,
            candidates: None,
            action: None,
            fault: None,
            limits,
            name: self.name.clone(),
            budget: load_budget,
            overran_at: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        // Past the deadline: go on while the call has used less than its budget of CPU time
        // since (it was preempted), else stop it.
        store.epoch_deadline_callback(|mut ctx| {
            let s = ctx.data_mut();
            let Some(now) = thread_cpu() else { return Ok(UpdateDeadline::Interrupt) };
            match s.overran_at {
                None => {
                    s.overran_at = Some(now);
                    Ok(UpdateDeadline::Continue(1))
                }
                Some(at) if now.saturating_sub(at) < s.budget => Ok(UpdateDeadline::Continue(1)),
                Some(_) => Ok(UpdateDeadline::Interrupt),
            }
        });
        store.set_epoch_deadline(ticks(load_budget));
        if let Some(f) = self.limits.fuel {
            store.set_fuel(f).map_err(|e| format!("cannot set fuel: {e}"))?;
        }
        let instance: Instance = self
            .linker
            .instantiate(&mut store, &self.module)
            .map_err(|e| describe(name, &e, &self.limits, ("load budget", load_budget)))?;
        let marker = instance
            .get_typed_func::<(), i32>(&mut store, self.marker)
            .map_err(|_| format!("`{}` must be a function () -> i32", self.marker))?;
        match marker.call(&mut store, ()) {
            Ok(1) => {}
            Ok(v) => return Err(format!("`{}` returned {v}, not 1", self.marker)),
            Err(e) => return Err(describe(name, &e, &self.limits, ("load budget", load_budget))),
        }
        let typed = |store: &mut Store<State>, export: &str| -> Result<Option<TypedFunc<(), i32>>, String> {
            match instance.get_export(&mut *store, export) {
                None => Ok(None),
                Some(_) => instance
                    .get_typed_func::<(), i32>(&mut *store, export)
                    .map(Some)
                    .map_err(|_| format!("`{export}` must be a function () -> i32")),
            }
        };
        let decide = typed(&mut store, "poolpipe_decide")?;
        let choose = typed(&mut store, "poolpipe_choose")?;
        // Initialise with the configuration blob.
        if let Some(init) = instance.get_export(&mut store, "init") {
            let init = init
                .into_func()
                .and_then(|f| f.typed::<(i32, i32), i32>(&store).ok())
                .ok_or("`init` must be a function (i32, i32) -> i32")?;
            let (ptr, len) = if self.config.is_empty() {
                (0, 0)
            } else {
                let area = instance.get_typed_func::<i32, i32>(&mut store, "poolpipe_config_area").map_err(|_| {
                    "takes a configuration but exports no `poolpipe_config_area(len) -> ptr`".to_string()
                })?;
                let len = count(self.config.len());
                let ptr = area
                    .call(&mut store, len)
                    .map_err(|e| describe(name, &e, &self.limits, ("load budget", load_budget)))?;
                let mem = instance.get_memory(&mut store, "memory").ok_or("exports no `memory`")?;
                mem.write(&mut store, index(ptr), &self.config)
                    .map_err(|_| format!("`poolpipe_config_area` gave {ptr}, outside its memory"))?;
                (ptr, len)
            };
            match init.call(&mut store, (ptr, len)) {
                Ok(0) => {}
                Ok(code) => return Err(format!("`init` refused its configuration (code {code})")),
                Err(e) => return Err(describe(name, &e, &self.limits, ("load budget", load_budget))),
            }
        } else if !self.config.is_empty() {
            return Err("was given a configuration but exports no `init`".into());
        }
        // How its batches move: `poolpipe_routing` (optional, default reserved).
        let routing = match instance.get_export(&mut store, "poolpipe_routing") {
            None => Routing::Reserved,
            Some(r) => {
                let f = r
                    .into_func()
                    .and_then(|f| f.typed::<(), i32>(&store).ok())
                    .ok_or("`poolpipe_routing` must be a function () -> i32")?;
                match f
                    .call(&mut store, ())
                    .map_err(|e| describe(name, &e, &self.limits, ("load budget", load_budget)))?
                {
                    0 => Routing::Reserved,
                    1 => Routing::PerPool,
                    v => return Err(format!("`poolpipe_routing` returned {v}, not 0 (reserved) or 1 (per-pool)")),
                }
            }
        };
        // Loaded: from now on each call's allowance is the calls' deadline.
        store.data_mut().budget = self.limits.deadline;
        Ok(Running { name: self.name.clone(), store, limits: self.limits.clone(), decide, choose, routing })
    }
}

impl Running {
    /// Re-arms the deadline and the fuel before a call.
    fn arm(&mut self) -> Result<(), PolicyFailure> {
        self.store.data_mut().overran_at = None;
        self.store.set_epoch_deadline(ticks(self.limits.deadline));
        if let Some(f) = self.limits.fuel {
            self.store.set_fuel(f).map_err(|e| PolicyFailure(format!("policy {}: fuel: {e}", self.name)))?;
        }
        Ok(())
    }
}

/// A batching policy running in a module.
struct WasmBatching {
    running: Running,
    routing: Routing,
}

impl BatchingPolicy for WasmBatching {
    fn name(&self) -> &str {
        &self.running.name
    }

    fn routing(&self) -> Routing {
        self.routing
    }

    fn sandboxed(&self) -> bool {
        true
    }

    fn decide(&mut self, host: &mut dyn QueueHost) -> Result<Action, PolicyFailure> {
        let r = &mut self.running;
        if r.decide.is_none() {
            return Err(PolicyFailure(format!("policy {} has no `poolpipe_decide`", r.name)));
        }
        r.arm()?;
        let ptr: *mut (dyn QueueHost + '_) = host;
        // SAFETY: the lifetime is erased only for the duration of this call; the pointer is
        // cleared below before `host` can go out of scope (see `unsafe impl Send for State`).
        let ptr: *mut (dyn QueueHost + 'static) = unsafe { std::mem::transmute(ptr) };
        {
            let s = r.store.data_mut();
            s.host = Some(ptr);
            s.action = None;
            s.fault = None;
        }
        let Running { store, decide, .. } = r;
        let result = decide.as_ref().expect("checked above").call(&mut *store, ());
        let s = r.store.data_mut();
        s.host = None;
        let (action, fault) = (s.action.take(), s.fault.take());
        match result {
            Err(e) => Err(PolicyFailure(describe(&r.name, &e, &r.limits, ("deadline", r.limits.deadline)))),
            Ok(code) if code != 0 => {
                Err(PolicyFailure(format!("policy {}: `poolpipe_decide` returned {code}", r.name)))
            }
            Ok(_) => match fault {
                Some(f) => Err(PolicyFailure(format!("policy {}: {f}", r.name))),
                None => Ok(action.unwrap_or(Action::Idle)),
            },
        }
    }
}

/// A reservation policy running in a module.
struct WasmReservation {
    running: Running,
}

impl ReservationPolicy for WasmReservation {
    fn name(&self) -> &str {
        &self.running.name
    }

    fn choose(&mut self, candidates: &[Candidate]) -> Result<usize, PolicyFailure> {
        let r = &mut self.running;
        if r.choose.is_none() {
            return Err(PolicyFailure(format!("policy {} has no `poolpipe_choose`", r.name)));
        }
        r.arm()?;
        r.store.data_mut().candidates = Some(candidates as *const [Candidate]);
        let Running { store, choose, .. } = r;
        let result = choose.as_ref().expect("checked above").call(&mut *store, ());
        r.store.data_mut().candidates = None;
        match result {
            Err(e) => Err(PolicyFailure(describe(&r.name, &e, &r.limits, ("deadline", r.limits.deadline)))),
            Ok(i) => usize::try_from(i).ok().filter(|&i| i < candidates.len()).ok_or_else(|| {
                PolicyFailure(format!("policy {}: chose candidate {i} of {}", r.name, candidates.len()))
            }),
        }
    }
}
