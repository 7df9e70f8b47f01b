//! `poolpipe plan` and `poolpipe bench planner`: the planner crate's front end. Reads the
//! profile folder, fleet and workload, plans, prints a table and writes the plan as JSON.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use poolpipe_planner::{Inputs, Plan, PlanOptions, Planner, PlannerKind};
use serde::Serialize;

/// Reads the inputs of a plan, with the paths in the errors.
pub fn load_inputs(profiles: &Path, fleet: &Path, workload: &Path) -> Result<Inputs> {
    Inputs::load(profiles, fleet, workload).with_context(|| {
        format!(
            "reading profiles {}, fleet {} and workload {}",
            profiles.display(),
            fleet.display(),
            workload.display()
        )
    })
}

/// Plans with one planner.
pub fn plan(inputs: &Inputs, kind: PlannerKind, options: PlanOptions) -> Result<Plan> {
    let mut p = Planner::new(inputs, options)?;
    Ok(p.plan(kind)?)
}

/// Writes a plan as pretty JSON, creating parent folders.
pub fn write(plan: &Plan, path: &Path) -> Result<()> {
    if let Some(d) = path.parent()
        && !d.as_os_str().is_empty()
    {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let text = serde_json::to_string_pretty(plan)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing the plan to {}", path.display()))
}

fn ms(us: f64) -> String {
    format!("{:.1}", us / 1000.0)
}

/// The plan as tables for people.
pub fn render(plan: &Plan) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} plan: objective z = {:.1} (least throughput / weight), {}, solved in {:.2} s ({} configurations, {} integer variables, {} nodes)",
        plan.planner,
        plan.objective,
        if plan.solve.solver == "construction" {
            "built, not searched".to_string()
        } else if plan.optimal {
            "optimal".to_string()
        } else {
            format!("within {:.3}% of optimal (proven)", plan.gap * 100.0)
        },
        plan.solve_seconds,
        plan.solve.columns,
        plan.solve.integer_vars,
        plan.solve.nodes,
    );
    for m in &plan.models {
        let _ = writeln!(
            s,
            "\n{}  weight {:.2}  SLO {} ms  throughput {:.1} req/s  ({:.1} per unit weight)",
            m.name,
            m.weight,
            ms(m.slo_us as f64),
            m.throughput,
            m.throughput / m.weight
        );
        let _ = writeln!(
            s,
            "  {:>5} {:>9} {:>15}  partitions (blocks class share x vGPUs = GPUs, ms per batch)",
            "batch", "req/s", "latency/SLO ms"
        );
        for p in &m.pipelines {
            let parts: Vec<String> = p
                .partitions
                .iter()
                .map(|q| {
                    format!(
                        "[{}-{}) {} 1/{} x{} = {} GPU, {} ms{}",
                        q.first_block,
                        q.end_block,
                        q.class,
                        q.share,
                        q.vgpus,
                        trim(q.gpus),
                        ms(q.inference_us as f64),
                        if q.transfer_us > 0.0 {
                            format!(" + {} ms transfer", ms(q.transfer_us))
                        } else {
                            String::new()
                        }
                    )
                })
                .collect();
            let _ = writeln!(
                s,
                "  {:>5} {:>9.1} {:>15}  {}",
                p.batch,
                p.throughput,
                format!("{}+{}/{}", ms(p.latency_us), ms(p.margin_us), ms(m.slo_us as f64)),
                parts.join("  ->  ")
            );
        }
        let pools: Vec<String> =
            m.pools.iter().map(|p| format!("partition {} on {}: {} GPUs", p.partition, p.class, p.gpus)).collect();
        let _ = writeln!(s, "  pools: {}", pools.join(", "));
    }
    let _ = writeln!(s, "\nGPUs per class (used / available):");
    for c in &plan.classes {
        let _ = writeln!(s, "  {:<8} {:>4} / {}", c.name, c.used, c.available);
    }
    for u in &plan.unserved {
        let _ = writeln!(s, "\nNOT SERVED: {}: {}", u.name, u.reason);
    }
    s
}

fn trim(x: f64) -> String {
    let t = format!("{x:.2}");
    t.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// One case of the planner benchmark.
#[derive(Clone, Debug, Serialize)]
pub struct BenchCase {
    /// Fleet name (file stem), e.g. hc1.
    pub cluster: String,
    /// Workload name (file stem), e.g. group1.
    pub group: String,
    /// Planner.
    pub planner: String,
    /// Objective z.
    pub objective: f64,
    /// Seconds to plan.
    pub solve_seconds: f64,
    /// Proven relative gap.
    pub gap: f64,
    /// Models not served.
    pub unserved: usize,
    /// The outside oracle on the same configurations (`--oracle`; PPipe rows only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oracle: Option<OracleResult>,
}

/// Objective ratios of one cluster.
#[derive(Clone, Debug, Serialize)]
pub struct BenchRatio {
    /// Fleet name.
    pub cluster: String,
    /// Mean over groups of ppipe / np.
    pub ppipe_over_np: f64,
    /// Mean over groups of ppipe / dart-r (None: no DART-r plan, the fleet does not have two
    /// classes).
    pub ppipe_over_dart_r: Option<f64>,
}

/// What `scripts/planner_oracle.py` (HiGHS) found for a case.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct OracleResult {
    /// Its objective (None: no solution in its time).
    pub objective: Option<f64>,
    /// Its proven upper bound on the objective (None: none in its time).
    #[serde(default)]
    pub bound: Option<f64>,
    /// Its proven relative gap.
    pub gap: Option<f64>,
    /// Whether it proved its objective optimal.
    pub optimal: bool,
    /// Its seconds.
    pub seconds: f64,
}

/// Runs the oracle on `inputs` (the PPipe MILP's configurations), `time_limit` seconds.
pub fn oracle(inputs: &Inputs, options: &PlanOptions, time_limit: f64) -> Result<OracleResult> {
    let configurations = Planner::new(inputs, options.clone())?.configurations()?;
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = std::env::temp_dir().join(format!("poolpipe-oracle-{}-{call}.json", std::process::id()));
    std::fs::write(&file, serde_json::to_vec(&configurations)?)?;
    let script = Path::new("scripts/planner_oracle.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(&file)
        .args(["--time-limit", &time_limit.to_string()])
        .output()
        .context("running python3 scripts/planner_oracle.py (run from the repository root, with scipy installed)")?;
    let _ = std::fs::remove_file(&file);
    if !out.status.success() {
        anyhow::bail!(
            "scripts/planner_oracle.py failed (pip install scipy; run from the repository root): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("reading the oracle's JSON")
}

/// The planner benchmark.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Every case and planner.
    pub cases: Vec<BenchCase>,
    /// Ratios per cluster.
    pub ratios: Vec<BenchRatio>,
    /// Mean ppipe / np over every case.
    pub mean_ppipe_over_np: f64,
    /// Mean ppipe / dart-r over every case with a DART-r plan.
    pub mean_ppipe_over_dart_r: Option<f64>,
    /// Median and largest PPipe planning time, seconds.
    pub ppipe_median_seconds: f64,
    /// Largest PPipe planning time, seconds.
    pub ppipe_max_seconds: f64,
    /// Cases where PPipe is below NP or DART-r (should be none).
    pub ppipe_below_a_baseline: usize,
    /// Options used.
    pub options: PlanOptions,
}

/// Runs the three planners on every (fleet, workload) pair given (DART-r on two-class fleets
/// only); with `oracle` (a time limit, seconds), the outside oracle on each case too.
pub fn bench(
    profiles: &Path,
    fleets: &[PathBuf],
    workloads: &[PathBuf],
    options: &PlanOptions,
    progress: bool,
    oracle_limit: Option<f64>,
) -> Result<BenchReport> {
    let stem = |p: &PathBuf| p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let pb = if progress {
        crate::progress((fleets.len() * workloads.len()) as u64, "planning")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut cases = vec![];
    let mut ratios = vec![];
    let mut all_np = vec![];
    let mut all_dart = vec![];
    let mut times = vec![];
    let mut below = 0;
    for f in fleets {
        let mut r_np = vec![];
        let mut r_dart = vec![];
        for w in workloads {
            pb.set_message(format!("{} {}", stem(f), stem(w)));
            let inputs = load_inputs(profiles, f, w)?;
            let mut planner = Planner::new(&inputs, options.clone())?;
            let (pp, np, dart) = planner.all().with_context(|| format!("planning {} on {}", stem(w), stem(f)))?;
            let oracle = match oracle_limit {
                Some(t) => Some(oracle(&inputs, options, t).with_context(|| format!("{} on {}", stem(w), stem(f)))?),
                None => None,
            };
            for (p, o) in [(Some(&pp), oracle), (Some(&np), None), (dart.as_ref(), None)] {
                let Some(p) = p else { continue };
                cases.push(BenchCase {
                    cluster: stem(f),
                    group: stem(w),
                    planner: p.planner.clone(),
                    objective: p.objective,
                    solve_seconds: p.solve_seconds,
                    gap: p.gap,
                    unserved: p.unserved.len(),
                    oracle: o,
                });
            }
            if pp.objective < np.objective - 1e-9 || dart.as_ref().is_some_and(|d| pp.objective < d.objective - 1e-9) {
                below += 1;
            }
            times.push(pp.solve_seconds);
            // A baseline that serves nothing has no ratio.
            if np.objective > 0.0 {
                r_np.push(pp.objective / np.objective);
            }
            if let Some(d) = dart.as_ref().filter(|d| d.objective > 0.0) {
                r_dart.push(pp.objective / d.objective);
            }
            pb.inc(1);
        }
        ratios.push(BenchRatio {
            cluster: stem(f),
            ppipe_over_np: mean(&r_np),
            ppipe_over_dart_r: (!r_dart.is_empty()).then(|| mean(&r_dart)),
        });
        all_np.extend(r_np);
        all_dart.extend(r_dart);
    }
    pb.finish_and_clear();
    times.sort_by(f64::total_cmp);
    Ok(BenchReport {
        cases,
        ratios,
        mean_ppipe_over_np: mean(&all_np),
        mean_ppipe_over_dart_r: (!all_dart.is_empty()).then(|| mean(&all_dart)),
        ppipe_median_seconds: times.get(times.len() / 2).copied().unwrap_or(0.0),
        ppipe_max_seconds: times.last().copied().unwrap_or(0.0),
        ppipe_below_a_baseline: below,
        options: options.clone(),
    })
}

fn mean(x: &[f64]) -> f64 {
    if x.is_empty() { 0.0 } else { x.iter().sum::<f64>() / x.len() as f64 }
}

/// The benchmark as tables.
pub fn render_bench(r: &BenchReport) -> String {
    let mut s = String::new();
    let oracle = r.cases.iter().any(|c| c.oracle.is_some());
    let _ = write!(
        s,
        "{:<8} {:<8} {:>11} {:>8} {:>9} {:>11} {:>8} {:>9} {:>10} {:>8}",
        "cluster", "group", "ppipe z", "gap %", "seconds", "np z", "np s", "dart-r z", "/np", "/dart-r"
    );
    if oracle {
        let _ = write!(s, " {:>11} {:>8} {:>9} {:>9}", "oracle z", "gap %", "seconds", "/oracle");
    }
    s.push('\n');
    let dash = |x: Option<f64>, prec: usize| x.map_or("-".to_string(), |v| format!("{v:.prec$}"));
    for pp in r.cases.iter().filter(|c| c.planner == "ppipe") {
        let find =
            |name: &str| r.cases.iter().find(|c| c.cluster == pp.cluster && c.group == pp.group && c.planner == name);
        let (Some(np), d) = (find("np"), find("dart-r")) else { continue };
        let _ = write!(
            s,
            "{:<8} {:<8} {:>11.1} {:>8.3} {:>9.2} {:>11.1} {:>8.2} {:>9} {:>10.3} {:>8}",
            pp.cluster,
            pp.group,
            pp.objective,
            pp.gap * 100.0,
            pp.solve_seconds,
            np.objective,
            np.solve_seconds,
            dash(d.map(|d| d.objective), 1),
            pp.objective / np.objective,
            dash(d.map(|d| pp.objective / d.objective), 3)
        );
        if let Some(o) = &pp.oracle {
            let _ = write!(
                s,
                " {:>11} {:>8} {:>9.2} {:>9}",
                dash(o.objective, 1),
                dash(o.gap.map(|g| g * 100.0), 3),
                o.seconds,
                dash(o.objective.map(|z| pp.objective / z), 4)
            );
        }
        s.push('\n');
    }
    let _ = writeln!(s, "\nmean objective ratio per cluster:");
    for c in &r.ratios {
        let _ = writeln!(
            s,
            "  {:<8} ppipe/np {:.3}  ppipe/dart-r {}",
            c.cluster,
            c.ppipe_over_np,
            dash(c.ppipe_over_dart_r, 3)
        );
    }
    let _ = writeln!(
        s,
        "  all      ppipe/np {:.3}  ppipe/dart-r {}\nppipe planning time: median {:.2} s, worst {:.2} s (time limit {:.0} s per solver call, gap target {:.2}%); cases below a baseline: {}",
        r.mean_ppipe_over_np,
        dash(r.mean_ppipe_over_dart_r, 3),
        r.ppipe_median_seconds,
        r.ppipe_max_seconds,
        r.options.time_limit.as_secs_f64(),
        r.options.mip_gap * 100.0,
        r.ppipe_below_a_baseline
    );
    s
}

/// Plan a fleet: how each model of the workload is cut, which pool of which GPU class
/// serves each partition, with how many (v)GPUs and at which batch size (PPipe's MILP, or
/// the NP and DART-r baselines). Prints the plan and writes it as JSON.
#[derive(clap::Args, Clone, Debug)]
pub struct PlanCmdArgs {
    /// Profile folder in the ppipe-data format (block-latency/, cut-bytes/, optional
    /// slo-us.csv), e.g. ../shared/ppipe-data or the output of `poolpipe profile`.
    #[arg(long, value_name = "DIR")]
    pub profiles: std::path::PathBuf,
    /// Fleet file (TOML): bandwidth_gbps and [[class]] tables (name, count, gpus_per_server).
    #[arg(long, value_name = "FILE")]
    pub fleet: std::path::PathBuf,
    /// Workload file (TOML): [[model]] tables (name, weight, optional slo_ms).
    #[arg(long, value_name = "FILE")]
    pub workload: std::path::PathBuf,
    /// ppipe, np or dart-r.
    #[arg(long, default_value = "ppipe")]
    pub planner: poolpipe_planner::PlannerKind,
    /// Write the plan (JSON) here.
    #[arg(long, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,
    /// Also write every SLO-feasible pipeline configuration (JSON, before pruning) here: the
    /// input of `scripts/planner_oracle.py`, which solves the same MILP with HiGHS.
    #[arg(long, value_name = "FILE")]
    pub columns: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub opts: PlanArgs,
    /// Print the plan as one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Runs `poolpipe plan`.
pub fn command(a: PlanCmdArgs) -> Result<()> {
    let PlanCmdArgs { profiles, fleet, workload, planner, out, columns, opts, json } = a;
    let inputs = load_inputs(&profiles, &fleet, &workload)?;
    let options = opts.options()?;
    if let Some(path) = &columns {
        let c = Planner::new(&inputs, options.clone())?.configurations()?;
        std::fs::write(path, serde_json::to_vec(&c)?)
            .with_context(|| format!("writing the configurations to {}", path.display()))?;
    }
    let p = plan(&inputs, planner, options)?;
    if let Some(out) = &out {
        write(&p, out)?;
    }
    if json {
        println!("{}", serde_json::to_string(&p)?);
    } else {
        print!("{}", render(&p));
        if let Some(out) = &out {
            println!("\nplan written to {}", out.display());
        }
    }
    Ok(())
}

/// The cases of `bench planner` and `bench paper`: profiles, fleets and workloads.
#[derive(clap::Args, Clone, Debug)]
pub struct CaseArgs {
    /// Profile folder (the published profiles by default).
    #[arg(long, value_name = "DIR", default_value = "../shared/ppipe-data")]
    pub profiles: std::path::PathBuf,
    /// Fleet files [default: configs/fleets/hc1..hc4.toml].
    #[arg(long, value_name = "FILE", value_delimiter = ',')]
    pub fleets: Vec<std::path::PathBuf>,
    /// Workload files [default: configs/workloads/group1..6.toml; bench paper --quick: groups
    /// 1 and 3].
    #[arg(long, value_name = "FILE", value_delimiter = ',')]
    pub workloads: Vec<std::path::PathBuf>,
}

impl CaseArgs {
    /// The fleets and workloads given, or the paper's clusters and these groups.
    pub fn resolve(&self, groups: &[usize]) -> (Vec<std::path::PathBuf>, Vec<std::path::PathBuf>) {
        let fleets = if self.fleets.is_empty() {
            (1..=4).map(|i| std::path::PathBuf::from(format!("configs/fleets/hc{i}.toml"))).collect()
        } else {
            self.fleets.clone()
        };
        let workloads = if self.workloads.is_empty() {
            groups.iter().map(|i| std::path::PathBuf::from(format!("configs/workloads/group{i}.toml"))).collect()
        } else {
            self.workloads.clone()
        };
        (fleets, workloads)
    }
}

/// Planner options shared by `plan` and `bench planner`.
#[derive(clap::Args, Clone, Debug)]
pub struct PlanArgs {
    /// Most partitions per pipeline (1..=3).
    #[arg(long, default_value_t = 2)]
    pub max_partitions: usize,
    /// Shares a vGPU may have (k for 1/k of a GPU); a class uses those it has profiles for.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4")]
    pub shares: Vec<usize>,
    /// Largest batch at share 1/1, 1/2, 1/3, 1/4 ...
    #[arg(long, value_delimiter = ',', default_value = "8,4,2,2")]
    pub max_batch: Vec<usize>,
    /// Only these batch sizes (comma-separated; 1 must be among them) [default: all].
    #[arg(long, value_delimiter = ',')]
    pub batches: Option<Vec<usize>>,
    /// Planning margin, a fraction of the SLO.
    #[arg(long, default_value_t = 0.4)]
    pub margin: f64,
    /// Batch-build factor of the latency estimate.
    #[arg(long, default_value_t = 1.3)]
    pub batch_build_factor: f64,
    /// Time limit of each solver call, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub time_limit: f64,
    /// Relative gap at which the search may stop.
    #[arg(long, default_value_t = 1e-4)]
    pub gap: f64,
    /// How the MILP is searched: auto (a short joint search, then the split search), joint
    /// (branch and bound on the whole MILP) or split (GPU splits between models).
    #[arg(long, default_value = "auto")]
    pub search: poolpipe_planner::Search,
}

impl PlanArgs {
    pub fn options(&self) -> Result<poolpipe_planner::PlanOptions> {
        if !(self.time_limit.is_finite() && self.time_limit > 0.0) {
            anyhow::bail!("--time-limit {} must be a positive number of seconds", self.time_limit);
        }
        Ok(poolpipe_planner::PlanOptions {
            max_partitions: self.max_partitions,
            shares: self.shares.clone(),
            max_batch_per_share: self.max_batch.clone(),
            batches: self.batches.clone(),
            margin: self.margin,
            batch_build_factor: self.batch_build_factor,
            time_limit: std::time::Duration::from_secs_f64(self.time_limit),
            mip_gap: self.gap,
            search: self.search,
        })
    }
}
