//! The WebAssembly host: built-in guests decide as their native twins on scripted queues, and
//! hostile modules (written in WAT) fail with a clear reason instead of taking the host down.

use std::time::{Duration, Instant};

use poolpipe_policies::wasm::{Limits, WasmModule};
use poolpipe_policies::{Action, BatchingPolicy, Candidate, Probe, QueueHost, Routing, guests, native};

/// A scripted queue: deadlines, one lane per entry of `planned`, probes finishing at
/// `now + base + per_request x batch` (+ the lane's busy time), idle workers per lane.
#[derive(Clone, Debug)]
struct Fake {
    now: f64,
    deadlines: Vec<f64>,
    looked: bool,
    planned: Vec<usize>,
    busy: Vec<f64>,
    idle: Vec<usize>,
    /// Arrival rate, requests/s.
    rate: f64,
    /// Time `now()` takes off the CPU (a thread the operating system preempts).
    stall: Duration,
}

impl QueueHost for Fake {
    fn now(&self) -> f64 {
        std::thread::sleep(self.stall);
        self.now
    }
    fn queue_len(&self) -> usize {
        self.deadlines.len()
    }
    fn arrival(&self, i: usize) -> f64 {
        self.deadlines.get(i).map_or(f64::NAN, |d| d - 50_000.0)
    }
    fn enqueued(&self, i: usize) -> f64 {
        self.arrival(i)
    }
    fn deadline(&self, i: usize) -> f64 {
        self.deadlines.get(i).copied().unwrap_or(f64::NAN)
    }
    fn first_look(&mut self) -> bool {
        !std::mem::replace(&mut self.looked, true)
    }
    fn lanes(&self) -> usize {
        self.planned.len()
    }
    fn planned_batch(&self, lane: usize) -> usize {
        self.planned[lane]
    }
    fn batch_build(&self, _lane: usize) -> f64 {
        3_000.0
    }
    fn latency(&self, _lane: usize, batch: usize) -> f64 {
        10_000.0 + 4_000.0 * batch as f64
    }
    fn idle_workers(&self, lane: usize) -> usize {
        self.idle[lane]
    }
    fn probe(&mut self, lane: usize, batch: usize) -> Probe {
        if batch == 0 || batch > 8 {
            return Probe { finish: f64::INFINITY, wait: f64::INFINITY };
        }
        let wait = self.busy[lane];
        Probe { finish: self.now + wait + self.latency(lane, batch), wait }
    }
    fn arrival_rate(&self) -> f64 {
        self.rate
    }
    fn throughput(&self, lane: usize, batch: usize) -> f64 {
        if batch == 0 || batch > 8 { 0.0 } else { batch as f64 * 1e6 / self.latency(lane, batch) }
    }
}

fn queues() -> Vec<Fake> {
    let mut out = vec![];
    for n in [0, 1, 3, 4, 9] {
        for busy in [[0.0, 5_000.0], [20_000.0, 1_000.0], [60_000.0, 70_000.0]] {
            for looked in [false, true] {
                for idle in [[0, 0], [1, 0], [0, 2]] {
                    for rate in [5.0, 500.0] {
                        out.push(Fake {
                            now: 100_000.0,
                            deadlines: (0..n).map(|i| 150_000.0 + 1_000.0 * i as f64).collect(),
                            looked,
                            planned: vec![4, 2],
                            busy: busy.to_vec(),
                            idle: idle.to_vec(),
                            rate,
                            stall: Duration::ZERO,
                        });
                    }
                }
            }
        }
    }
    out
}

fn guest(name: &str, config: &str) -> WasmModule {
    WasmModule::from_bytes(name, guests::builtin(name).unwrap(), config.as_bytes(), Limits::default()).unwrap()
}

#[test]
fn built_in_guests_decide_as_their_native_twins() {
    for (name, routing) in [("ppipe", Routing::Reserved), ("reactive", Routing::PerPool), ("triton", Routing::PerPool)]
    {
        let module = guest(name, "");
        assert_eq!(module.abi_version(), 2, "{name}");
        let mut wasm = module.batching().unwrap().unwrap();
        let mut native = native::batching(name).unwrap();
        assert_eq!(wasm.routing(), routing, "{name}");
        for q in queues() {
            let (mut a, mut b) = (q.clone(), q.clone());
            let (x, y) = (wasm.decide(&mut a).unwrap(), native.decide(&mut b).unwrap());
            assert_eq!(x, y, "{name} on {q:?}");
            assert_eq!(a.looked, b.looked, "{name}: first_look used alike");
        }
    }
    // Configuration reaches the guest: a wider first look accepts a smaller batch (4 would
    // finish at 28 ms on the busy lane, past the head's deadline at 27 ms), below overload
    // (at 1000 requests/s, more than the lane serves, the head would be dropped instead).
    let q = Fake {
        now: 0.0,
        deadlines: vec![27_000.0],
        looked: false,
        planned: vec![4],
        busy: vec![2_000.0],
        idle: vec![0],
        rate: 5.0,
        stall: Duration::ZERO,
    };
    let mut narrow = guest("ppipe", "").batching().unwrap().unwrap();
    assert_eq!(narrow.decide(&mut q.clone()).unwrap(), Action::Drop { count: 1 });
    let mut wide = guest("ppipe", "first_look_fraction=0.25").batching().unwrap().unwrap();
    let mut twin = native::Ppipe { first_look_fraction: 0.25, ..Default::default() };
    assert_eq!(wide.decide(&mut q.clone()).unwrap(), twin.decide(&mut q.clone()).unwrap());
    assert!(matches!(twin.decide(&mut q.clone()).unwrap(), Action::Wait { .. }), "a batch of 3 fits");
    let overloaded = Fake { rate: 1_000.0, ..q.clone() };
    assert_eq!(wide.decide(&mut overloaded.clone()).unwrap(), Action::Drop { count: 1 });
    assert_eq!(twin.decide(&mut overloaded.clone()).unwrap(), Action::Drop { count: 1 });
    let mut triton = guest("triton", "max_queue_delay_us=500").batching().unwrap().unwrap();
    let mut twin = native::Triton { max_queue_delay_us: Some(500.0) };
    for q in queues() {
        assert_eq!(triton.decide(&mut q.clone()).unwrap(), twin.decide(&mut q.clone()).unwrap());
    }
}

#[test]
fn ppipe_is_work_conserving_at_light_load_only() {
    // One request, planned batch 4, an idle lane, a deadline that leaves room to wait.
    let q = |rate: f64, idle: usize| Fake {
        now: 0.0,
        deadlines: vec![200_000.0],
        looked: true,
        planned: vec![4],
        busy: vec![0.0],
        idle: vec![idle],
        rate,
        stall: Duration::ZERO,
    };
    // Throughput at batch 1 is 1e6 / 14_000 = 71 requests/s; half of it is the threshold.
    let light = guest("ppipe", "light_load=0.5").batching().unwrap().unwrap();
    let published = guest("ppipe", "light_load=0").batching().unwrap().unwrap();
    for (mut policy, light_load) in [(light, 0.5), (published, 0.0)] {
        let mut twin = native::Ppipe { light_load, ..Default::default() };
        for (rate, idle) in [(10.0, 1), (30.0, 1), (40.0, 1), (500.0, 1), (10.0, 0)] {
            let (a, b) = (policy.decide(&mut q(rate, idle)).unwrap(), twin.decide(&mut q(rate, idle)).unwrap());
            assert_eq!(a, b, "guest and native twin, rate {rate}, idle {idle}, light_load {light_load}");
            let goes_now = light_load > 0.0 && idle > 0 && rate <= 0.5 * 1e6 / 14_000.0;
            if goes_now {
                assert_eq!(a, Action::Dispatch { lane: 0, batch: 1 }, "rate {rate}: idle lane, light load");
            } else {
                assert!(
                    matches!(a, Action::Wait { .. }),
                    "rate {rate}, idle {idle}: waits to fill the batch, got {a:?}"
                );
            }
        }
    }
    // A negative share is refused at load.
    let e = WasmModule::from_bytes("ppipe", guests::builtin("ppipe").unwrap(), b"light_load=-1", Limits::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("ppipe") && e.contains("configuration"), "{e}");
}

fn candidate(worker: u32, finish: f64, same_server: bool) -> Candidate {
    Candidate { worker, transfer_start: 0.0, transfer_end: 0.0, start: 0.0, finish, output_ready: finish, same_server }
}

#[test]
fn reservation_guests_choose() {
    let mut wasm = guest("earliest_finish", "").reservation().unwrap().unwrap();
    let mut same = guest("same_server", "").reservation().unwrap().unwrap();
    let mut slack = guest("same_server", "slack_us=5").reservation().unwrap().unwrap();
    let cases = [
        vec![candidate(0, 9.0, false)],
        vec![candidate(0, 9.0, false), candidate(1, 4.0, true), candidate(2, 4.0, false)],
        vec![candidate(0, 3.0, false), candidate(1, 4.0, true), candidate(2, 8.0, true)],
        vec![candidate(0, 4.0, false), candidate(1, 4.0, true)],
    ];
    // A worker whose server's uplink is busy loses to one finishing a little later whose
    // output can leave at once.
    let nic = vec![
        Candidate { output_ready: 30.0, ..candidate(0, 10.0, false) },
        Candidate { output_ready: 14.0, ..candidate(1, 12.0, false) },
        Candidate { output_ready: 14.0, ..candidate(2, 13.0, false) },
    ];
    assert_eq!(native::earliest_finish(&nic), 1, "then the earlier finish");
    for c in cases.iter().chain([&nic]) {
        assert_eq!(wasm.choose(c), Ok(native::earliest_finish(c)));
    }
    assert_eq!(same.choose(&nic), Ok(1));
    assert_eq!(same.choose(&cases[1]), Ok(1));
    assert_eq!(same.choose(&cases[2]), Ok(0), "staying would delay the batch");
    assert_eq!(same.choose(&cases[3]), Ok(1), "staying costs nothing");
    assert_eq!(slack.choose(&cases[2]), Ok(1), "within the slack");
}

const MARKER: &str = r#"(func (export "poolpipe_policy_abi_v1") (result i32) i32.const 1)"#;

fn wat(body: &str) -> String {
    format!("(module {body})")
}

fn load(body: &str, limits: Limits) -> Result<WasmModule, String> {
    WasmModule::from_bytes("hostile.wat", wat(body).as_bytes(), b"", limits).map_err(|e| e.to_string())
}

fn decide_with(body: &str, limits: Limits) -> String {
    let m = load(body, limits).unwrap();
    let mut p = m.batching().unwrap().unwrap();
    let mut q = queues()[10].clone();
    match p.decide(&mut q) {
        Ok(a) => panic!("a hostile policy decided {a:?}"),
        Err(e) => e.to_string(),
    }
}

fn decide(body: &str) -> String {
    decide_with(body, Limits::default())
}

#[test]
fn a_trap_is_a_failure_naming_the_module() {
    let e = decide(&format!(r#"{MARKER} (func (export "poolpipe_decide") (result i32) unreachable)"#));
    assert!(e.contains("policy hostile.wat trapped") && e.contains("unreachable"), "{e}");
}

#[test]
fn a_loop_stops_at_its_deadline() {
    let body = format!(r#"{MARKER} (func (export "poolpipe_decide") (result i32) (loop br 0) i32.const 0)"#);
    let t = Instant::now();
    let e = decide_with(&body, Limits { deadline: Duration::from_millis(2), ..Limits::default() });
    assert!(e.contains("ran past its deadline of 2ms"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(5), "stopped, not left running");
    let e = decide_with(&body, Limits { fuel: Some(10_000), deadline: Duration::from_secs(10), ..Limits::default() });
    assert!(e.contains("ran out of its fuel"), "{e}");
}

#[test]
fn a_preempted_call_is_no_runaway() {
    // The guest's thread is off the CPU for 20 ms (here: in a host call) and then runs a short
    // loop: the wall-clock deadline has passed, but the call used little CPU time since.
    let body = format!(
        r#"(import "poolpipe" "now" (func $now (result f64))) {MARKER}
           (func (export "poolpipe_decide") (result i32) (local i32)
             (drop (call $now))
             (loop (local.set 0 (i32.add (local.get 0) (i32.const 1)))
                   (br_if 0 (i32.lt_u (local.get 0) (i32.const 100000))))
             i32.const 0)"#
    );
    let m = load(&body, Limits { deadline: Duration::from_millis(2), ..Limits::default() }).unwrap();
    let mut p = m.batching().unwrap().unwrap();
    let mut q = Fake { stall: Duration::from_millis(20), ..queues()[10].clone() };
    for _ in 0..3 {
        assert_eq!(p.decide(&mut q), Ok(Action::Idle));
    }
    // The same guest stalled in a loop that keeps the CPU busy is still stopped.
    let spin = format!(
        r#"(import "poolpipe" "now" (func $now (result f64))) {MARKER}
           (func (export "poolpipe_decide") (result i32) (drop (call $now)) (loop br 0) i32.const 0)"#
    );
    let m = load(&spin, Limits { deadline: Duration::from_millis(2), ..Limits::default() }).unwrap();
    let e = m.batching().unwrap().unwrap().decide(&mut q).unwrap_err().to_string();
    assert!(e.contains("ran past its deadline of 2ms"), "{e}");
}

#[test]
fn memory_beyond_the_cap_is_refused() {
    let grow = format!(
        r#"(memory (export "memory") 1) {MARKER}
           (func (export "poolpipe_decide") (result i32) (drop (memory.grow (i32.const 512))) i32.const 0)"#
    );
    let e = decide(&grow);
    assert!(e.contains("more than its 16777216 bytes of memory"), "{e}");
    // A module that starts above the cap does not load.
    let big = format!(
        r#"(memory (export "memory") 300) {MARKER} (func (export "poolpipe_decide") (result i32) i32.const 0)"#
    );
    let e = load(&big, Limits::default()).unwrap_err();
    assert!(e.contains("hostile.wat") && e.contains("memory"), "{e}");
}

#[test]
fn tables_beyond_their_cap_are_refused() {
    // A 300M-entry table would take gigabytes outside the memory cap.
    let big =
        format!(r#"(table 300000000 funcref) {MARKER} (func (export "poolpipe_decide") (result i32) i32.const 0)"#);
    let t = Instant::now();
    let e = load(&big, Limits::default()).unwrap_err();
    assert!(e.contains("hostile.wat") && e.contains("table of more than 65536 entries"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(2), "refused at once: {:?}", t.elapsed());
    let grow = format!(
        r#"(table 1 funcref) {MARKER}
           (func (export "poolpipe_decide") (result i32)
             (drop (table.grow (ref.null func) (i32.const 100000000))) i32.const 0)"#
    );
    let e = decide(&grow);
    assert!(e.contains("table of more than 65536 entries"), "{e}");
}

#[test]
fn a_host_call_outside_the_guests_memory_traps() {
    let body = format!(
        r#"(import "poolpipe" "log" (func $log (param i32 i32))) (memory (export "memory") 1) {MARKER}
           (func (export "poolpipe_decide") (result i32) (call $log (i32.const 65530) (i32.const 100)) i32.const 0)"#
    );
    let e = decide(&body);
    assert!(e.contains("hostile.wat") && e.contains("reaches outside the guest's memory of 65536 bytes"), "{e}");
}

#[test]
fn a_load_past_its_budget_names_the_budget() {
    let body = format!(
        r#"(memory (export "memory") 1) {MARKER}
           (func (export "init") (param i32 i32) (result i32) (loop br 0) i32.const 0)
           (func (export "poolpipe_decide") (result i32) i32.const 0)"#
    );
    let e = load(&body, Limits::default()).unwrap_err();
    assert!(e.contains("ran past its load budget of 100ms"), "{e}");
}

#[test]
fn modules_of_abi_v1_still_load() {
    let v1 =
        load(&format!(r#"{MARKER} (func (export "poolpipe_decide") (result i32) i32.const 0)"#), Limits::default())
            .unwrap();
    assert_eq!(v1.abi_version(), 1);
    let mut p = v1.batching().unwrap().unwrap();
    assert_eq!(p.decide(&mut queues()[20].clone()).unwrap(), Action::Idle);
}

#[test]
fn the_wrong_abi_does_not_load() {
    let decide = r#"(func (export "poolpipe_decide") (result i32) i32.const 0)"#;
    let cases = [
        (decide.to_string(), "exports no ABI marker (`poolpipe_policy_abi_v2` or `poolpipe_policy_abi_v1`)"),
        (
            format!(r#"(import "poolpipe" "arrival_rate" (func (result f64))) {MARKER} {decide}"#),
            "exports `poolpipe_policy_abi_v1` but imports `arrival_rate`, which ABI v2 added",
        ),
        (format!(r#"(func (export "poolpipe_policy_abi_v1") (result i32) i32.const 2) {decide}"#), "returned 2, not 1"),
        (
            format!(r#"(func (export "poolpipe_policy_abi_v1") (param i32) (result i32) i32.const 1) {decide}"#),
            "must be a function () -> i32",
        ),
        (MARKER.to_string(), "implements no policy"),
        (
            format!(r#"{MARKER} (func (export "poolpipe_decide") (param i32) (result i32) i32.const 0)"#),
            "`poolpipe_decide` must be a function () -> i32",
        ),
        (format!(r#"(import "poolpipe" "open_file" (func)) {MARKER} {decide}"#), "open_file"),
        (
            format!(r#"{MARKER} {decide} (func (export "poolpipe_routing") (result i32) i32.const 7)"#),
            "returned 7, not 0 (reserved) or 1",
        ),
        (
            format!(r#"{MARKER} {decide} (func (export "init") (param i32 i32) (result i32) i32.const 3)"#),
            "refused its configuration (code 3)",
        ),
        ("(module".to_string(), "does not compile"),
    ];
    for (body, expect) in cases {
        let e = load(&body, Limits::default()).unwrap_err();
        assert!(e.contains("policy hostile.wat") && e.contains(expect), "{body}: {e}");
    }
    // A queue call outside a decision traps at load.
    let early = format!(
        r#"(import "poolpipe" "queue_len" (func $len (result i32))) {MARKER} {decide}
           (func (export "init") (param i32 i32) (result i32) call $len)"#
    );
    let e = load(&early, Limits::default()).unwrap_err();
    assert!(e.contains("outside a batching decision"), "{e}");
}

#[test]
fn two_actions_or_an_error_code_are_failures() {
    let two = format!(
        r#"(import "poolpipe" "drop_head" (func $drop (param i32))) {MARKER}
           (func (export "poolpipe_decide") (result i32) (call $drop (i32.const 1)) (call $drop (i32.const 1)) i32.const 0)"#
    );
    assert!(decide(&two).contains("asked for two actions"));
    let code = format!(r#"{MARKER} (func (export "poolpipe_decide") (result i32) i32.const 5)"#);
    assert!(decide(&code).contains("`poolpipe_decide` returned 5"));
    let choose = format!(r#"{MARKER} (func (export "poolpipe_choose") (result i32) i32.const 9)"#);
    let mut p = load(&choose, Limits::default()).unwrap().reservation().unwrap().unwrap();
    let e = p.choose(&[candidate(0, 1.0, false)]).unwrap_err().to_string();
    assert!(e.contains("chose candidate 9 of 1"), "{e}");
}
