//! `poolpipe bench paper`: the paper's simulation experiment. For every cluster x group, the
//! three planners' plans are swept with the `ppipe` policy under Poisson and bursty arrivals
//! (load factor 1.0 = PPipe's plan, as the paper measures all three against it); the PPipe
//! plan is also swept with the `reactive` policy (the ablation). Prints per cluster the largest
//! load factor with >= 99% attainment of each planner and the gains, next to the paper's
//! figures; writes a CSV of every sweep and an SVG bar chart.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use poolpipe_planner::{Inputs, Plan, PlanOptions, Planner, Workload};
use serde::Serialize;

use crate::commands::simulate::{Policies, SweepOptions, setup_with, sweep};
use poolpipe_dataplane::sim::{Arrivals, SimConfig};

/// The paper's figures (PPIPE.md, evaluation protocol).
pub mod reference {
    /// Mean gain of PPipe over NP, Poisson and bursty.
    pub const GAIN_NP: (f64, f64) = (0.480, 0.751);
    /// Mean gain of PPipe over DART-r, Poisson and bursty.
    pub const GAIN_DART_R: (f64, f64) = (0.322, 0.358);
    /// Gain over NP per cluster HC1..HC4, Poisson.
    pub const GAIN_NP_PER_CLUSTER: [f64; 4] = [0.649, 0.348, 0.467, 0.455];
    /// Mean achieved load factor, Poisson: NP, DART-r, PPipe.
    pub const LOAD_FACTOR: [f64; 3] = [0.668, 0.749, 0.965];
    /// Low-class GPU utilisation: NP, DART-r, PPipe.
    pub const LOW_UTILISATION: [f64; 3] = [0.081, 0.295, 0.736];
    /// Ablation: reactive per-pool batching versus reservations (load factor).
    pub const ABLATION: (f64, f64) = (0.71, 0.92);
}

/// Options of the experiment.
#[derive(Clone, Debug)]
pub struct PaperOptions {
    /// Profile folder.
    pub profiles: PathBuf,
    /// Fleet files.
    pub fleets: Vec<PathBuf>,
    /// Workload files (Poisson weights).
    pub workloads: Vec<PathBuf>,
    /// Weights of the bursty workload, in workload order (the paper's differ from Poisson's).
    pub bursty_weights: Option<Vec<f64>>,
    /// Coefficient of variation of bursty gaps.
    pub cv: f64,
    /// Simulated seconds per sweep point.
    pub duration_s: f64,
    /// Load-factor step.
    pub step: f64,
    /// Seed.
    pub seed: u64,
    /// Planner options.
    pub plan: PlanOptions,
    /// Folder for the CSV and the SVG.
    pub out: PathBuf,
}

/// One sweep of the experiment.
#[derive(Clone, Debug, Serialize)]
pub struct Case {
    /// Fleet (file stem).
    pub cluster: String,
    /// Workload (file stem).
    pub group: String,
    /// Planner of the plan swept.
    pub planner: String,
    /// Batching policy.
    pub policy: String,
    /// "poisson" or "bursty".
    pub arrivals: String,
    /// Largest load factor with >= 99% attainment.
    pub max_load_factor: f64,
    /// Attainment there.
    pub attainment: f64,
    /// Utilisation of the low class (the class with the most GPUs) there.
    pub low_utilisation: f64,
    /// Utilisation of the other classes there (mean).
    pub high_utilisation: f64,
    /// Scheduler cost per dispatched batch there, ns.
    pub scheduler_ns_per_batch: f64,
    /// Simulated requests per wall second there.
    pub requests_per_wall_second: f64,
}

/// Results of one cluster.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterSummary {
    /// Fleet.
    pub cluster: String,
    /// Mean max load factor, Poisson: np, dart-r, ppipe.
    pub poisson: [f64; 3],
    /// Mean max load factor, bursty: np, dart-r, ppipe.
    pub bursty: [f64; 3],
    /// PPipe over NP, Poisson and bursty (ratio of the summed load factors, minus 1).
    pub gain_np: (f64, f64),
    /// PPipe over DART-r, Poisson and bursty.
    pub gain_dart_r: (f64, f64),
    /// Low-class utilisation, Poisson: np, dart-r, ppipe.
    pub low_utilisation: [f64; 3],
    /// Ablation, Poisson: PPipe plan with reactive and with ppipe batching.
    pub ablation: (f64, f64),
}

/// The whole experiment.
#[derive(Clone, Debug, Serialize)]
pub struct PaperReport {
    /// Every sweep.
    pub cases: Vec<Case>,
    /// Per cluster.
    pub clusters: Vec<ClusterSummary>,
    /// Over every cluster, as the clusters' rows.
    pub overall: ClusterSummary,
    /// Mean scheduler cost per dispatched batch over the ppipe-policy sweeps, ns.
    pub scheduler_ns_per_batch: f64,
    /// Mean simulated requests per wall second.
    pub requests_per_wall_second: f64,
    /// Simulated seconds per point.
    pub duration_s: f64,
    /// Written files.
    pub csv: PathBuf,
    /// Written chart.
    pub svg: PathBuf,
}

const PLANNERS: [&str; 3] = ["np", "dart-r", "ppipe"];

fn stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

fn mean(x: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = x.collect();
    if v.is_empty() { 0.0 } else { (v.iter().sum::<f64>() / v.len() as f64).max(0.0) }
}

fn plan_rate(p: &Plan) -> f64 {
    p.objective * p.models.iter().map(|m| m.weight).sum::<f64>()
}

/// Runs the experiment.
pub fn run(o: &PaperOptions, progress: bool) -> Result<PaperReport> {
    let per_case = 3 * 2 + 1;
    let steps = (1.0 / o.step).round() as u64;
    let total = (o.fleets.len() * o.workloads.len() * per_case) as u64 * steps;
    let pb = if progress { crate::progress(total, "bench paper") } else { indicatif::ProgressBar::hidden() };
    let mut cases = vec![];
    for f in &o.fleets {
        for w in &o.workloads {
            let (cluster, group) = (stem(f), stem(w));
            pb.set_message(format!("{cluster} {group}: planning"));
            let inputs = crate::commands::plan::load_inputs(&o.profiles, f, w)?;
            let mut bursty_workload = inputs.workload.clone();
            if let Some(bw) = &o.bursty_weights {
                anyhow::ensure!(
                    bw.len() == bursty_workload.model.len(),
                    "{} bursty weights for the {} models of {}",
                    bw.len(),
                    bursty_workload.model.len(),
                    w.display()
                );
                for (m, x) in bursty_workload.model.iter_mut().zip(bw) {
                    m.weight = *x;
                }
            }
            for (arrivals, workload) in
                [(Arrivals::Poisson, inputs.workload.clone()), (Arrivals::Bursty { cv: o.cv }, bursty_workload)]
            {
                let name = if arrivals == Arrivals::Poisson { "poisson" } else { "bursty" };
                let plans = plans(&inputs, &workload, &o.plan)
                    .with_context(|| format!("planning {group} on {cluster} ({name} weights)"))?;
                let reference = plan_rate(&plans[2]);
                let mut runs: Vec<(&Plan, &str)> = plans.iter().map(|p| (p, "ppipe")).collect();
                if arrivals == Arrivals::Poisson {
                    runs.push((&plans[2], "reactive"));
                }
                for (plan, policy) in runs {
                    pb.set_message(format!("{cluster} {group}: {} {policy} {name}", plan.planner));
                    let setup = setup_with(plan, &inputs.profiles, &inputs.fleet, &workload)?;
                    let base = SimConfig {
                        arrivals: arrivals.clone(),
                        ..SimConfig::poisson(reference, o.duration_s, setup.weights.clone(), o.seed)
                    };
                    let so = SweepOptions { reference_rate: reference, step: o.step, max: 1.0, target: 0.99 };
                    let policies = Policies::native(policy)?;
                    let s = sweep(&setup.layout, &policies, &base, &so, &indicatif::ProgressBar::hidden())?;
                    pb.inc(steps);
                    let low = low_class(&inputs);
                    let r = &s.at_max;
                    let high = mean(r.utilisation.iter().filter(|(c, _)| **c != low).map(|(_, u)| *u));
                    cases.push(Case {
                        cluster: cluster.clone(),
                        group: group.clone(),
                        planner: plan.planner.clone(),
                        policy: policy.to_string(),
                        arrivals: name.to_string(),
                        max_load_factor: s.max_load_factor,
                        attainment: r.attainment,
                        low_utilisation: r.utilisation.get(&low).copied().unwrap_or(0.0),
                        high_utilisation: high,
                        scheduler_ns_per_batch: r.scheduler_ns_per_batch,
                        requests_per_wall_second: r.requests_per_wall_second,
                    });
                }
            }
        }
    }
    pb.finish_and_clear();
    let clusters: Vec<ClusterSummary> =
        o.fleets.iter().map(|f| summarise(&stem(f), cases.iter().filter(|c| c.cluster == stem(f)))).collect();
    let overall = summarise("all", cases.iter());
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    let csv = o.out.join("paper.csv");
    write_csv(&csv, &cases)?;
    let svg = o.out.join("paper.svg");
    chart(&svg, &clusters)?;
    let ppipe_runs = || cases.iter().filter(|c| c.policy == "ppipe");
    Ok(PaperReport {
        scheduler_ns_per_batch: mean(ppipe_runs().map(|c| c.scheduler_ns_per_batch)),
        requests_per_wall_second: mean(ppipe_runs().map(|c| c.requests_per_wall_second)),
        duration_s: o.duration_s,
        cases,
        clusters,
        overall,
        csv,
        svg,
    })
}

/// PPipe, NP and DART-r plans for `workload` on the inputs' fleet, in the order np, dart-r,
/// ppipe.
fn plans(inputs: &Inputs, workload: &Workload, options: &PlanOptions) -> Result<[Plan; 3]> {
    let inputs = Inputs::new(inputs.fleet.clone(), workload.clone(), inputs.profiles.clone())?;
    let mut planner = Planner::new(&inputs, options.clone())?;
    let (pp, np, dart) = planner.all()?;
    let dart = dart.context("DART-r needs a fleet of two GPU classes")?;
    Ok([np, dart, pp])
}

/// The low class: the one with the most GPUs.
fn low_class(inputs: &Inputs) -> String {
    inputs.fleet.class.iter().max_by_key(|c| c.count).map(|c| c.name.clone()).unwrap_or_default()
}

fn summarise<'a>(cluster: &str, cases: impl Iterator<Item = &'a Case> + Clone) -> ClusterSummary {
    let lf = |planner: &str, policy: &str, arrivals: &str| {
        mean(
            cases
                .clone()
                .filter(|c| c.planner == planner && c.policy == policy && c.arrivals == arrivals)
                .map(|c| c.max_load_factor),
        )
    };
    let util = |planner: &str| {
        mean(
            cases
                .clone()
                .filter(|c| c.planner == planner && c.policy == "ppipe" && c.arrivals == "poisson")
                .map(|c| c.low_utilisation),
        )
    };
    let poisson = PLANNERS.map(|p| lf(p, "ppipe", "poisson"));
    let bursty = PLANNERS.map(|p| lf(p, "ppipe", "bursty"));
    let gain = |a: f64, b: f64| if b > 0.0 { a / b - 1.0 } else { f64::INFINITY };
    ClusterSummary {
        cluster: cluster.to_string(),
        poisson,
        bursty,
        gain_np: (gain(poisson[2], poisson[0]), gain(bursty[2], bursty[0])),
        gain_dart_r: (gain(poisson[2], poisson[1]), gain(bursty[2], bursty[1])),
        low_utilisation: PLANNERS.map(util),
        ablation: (lf("ppipe", "reactive", "poisson"), poisson[2]),
    }
}

fn write_csv(path: &Path, cases: &[Case]) -> Result<()> {
    let mut s = String::from(
        "cluster,group,planner,policy,arrivals,max_load_factor,attainment,low_utilisation,high_utilisation,scheduler_ns_per_batch\n",
    );
    for c in cases {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{:.2},{:.5},{:.4},{:.4},{:.0}",
            c.cluster,
            c.group,
            c.planner,
            c.policy,
            c.arrivals,
            c.max_load_factor,
            c.attainment,
            c.low_utilisation,
            c.high_utilisation,
            c.scheduler_ns_per_batch
        );
    }
    std::fs::write(path, s).with_context(|| format!("writing {}", path.display()))
}

/// A grouped bar chart: per cluster, the mean max load factor of each planner (Poisson).
fn chart(path: &Path, clusters: &[ClusterSummary]) -> Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (860, 420)).into_drawing_area();
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let n = clusters.len().max(1);
        let mut ch = ChartBuilder::on(&root)
            .caption("Largest load factor with >= 99% attainment (Poisson)", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0f64..1.05f64)?;
        ch.configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    clusters.get(i as usize).map(|c| c.cluster.to_uppercase()).unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc("load factor")
            .draw()?;
        let colours = [RGBColor(150, 150, 150), RGBColor(90, 140, 200), RGBColor(220, 110, 40)];
        for (k, name) in ["NP", "DART-r", "PPipe"].iter().enumerate() {
            let colour = colours[k];
            ch.draw_series(clusters.iter().enumerate().map(|(i, c)| {
                let x0 = i as f64 - 0.35 + 0.23 * k as f64;
                Rectangle::new([(x0, 0.0), (x0 + 0.21, c.poisson[k])], colour.filled())
            }))?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
        }
        ch.configure_series_labels().border_style(BLACK).background_style(WHITE).draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))
}

fn pct(x: f64) -> String {
    if x.is_finite() { format!("{:+.1}%", 100.0 * x) } else { "n/a".into() }
}

/// The experiment as tables.
pub fn render(r: &PaperReport) -> String {
    let mut s = String::new();
    let _ =
        writeln!(s, "Largest load factor with >= 99% attainment ({} s per point; 1.0 = PPipe's plan)\n", r.duration_s);
    let _ = writeln!(
        s,
        "{:<8} {:>22} {:>22} {:>18} {:>18} {:>10}",
        "cluster", "Poisson np/dart/ppipe", "bursty np/dart/ppipe", "gain np P / B", "gain dart P / B", "paper np P"
    );
    let lf3 = |x: [f64; 3]| format!("{:.2} / {:.2} / {:.2}", x[0], x[1], x[2]);
    for (i, c) in r.clusters.iter().chain(std::iter::once(&r.overall)).enumerate() {
        let paper = if c.cluster == "all" {
            pct(reference::GAIN_NP.0)
        } else {
            reference::GAIN_NP_PER_CLUSTER.get(i).map_or("-".into(), |g| pct(*g))
        };
        let _ = writeln!(
            s,
            "{:<8} {:>22} {:>22} {:>18} {:>18} {:>10}",
            c.cluster,
            lf3(c.poisson),
            lf3(c.bursty),
            format!("{} / {}", pct(c.gain_np.0), pct(c.gain_np.1)),
            format!("{} / {}", pct(c.gain_dart_r.0), pct(c.gain_dart_r.1)),
            paper
        );
    }
    let o = &r.overall;
    let _ = writeln!(
        s,
        "\npaper: gain over NP {} (Poisson) / {} (bursty), over DART-r {} / {}; load factor np/dart/ppipe {:.3} / {:.3} / {:.3}",
        pct(reference::GAIN_NP.0),
        pct(reference::GAIN_NP.1),
        pct(reference::GAIN_DART_R.0),
        pct(reference::GAIN_DART_R.1),
        reference::LOAD_FACTOR[0],
        reference::LOAD_FACTOR[1],
        reference::LOAD_FACTOR[2]
    );
    let _ = writeln!(
        s,
        "low-class utilisation np/dart/ppipe: {:.1}% / {:.1}% / {:.1}%   (paper {:.1}% / {:.1}% / {:.1}%)",
        100.0 * o.low_utilisation[0],
        100.0 * o.low_utilisation[1],
        100.0 * o.low_utilisation[2],
        100.0 * reference::LOW_UTILISATION[0],
        100.0 * reference::LOW_UTILISATION[1],
        100.0 * reference::LOW_UTILISATION[2]
    );
    let _ = writeln!(
        s,
        "ablation (PPipe plan, Poisson): reactive {:.2} vs ppipe {:.2}   (paper {:.2} vs {:.2})",
        o.ablation.0,
        o.ablation.1,
        reference::ABLATION.0,
        reference::ABLATION.1
    );
    let _ = writeln!(
        s,
        "scheduler: {:.0} ns per dispatched batch (mean over ppipe runs); {:.0} simulated requests per wall second",
        r.scheduler_ns_per_batch, r.requests_per_wall_second
    );
    let _ = writeln!(s, "wrote {} and {}", r.csv.display(), r.svg.display());
    s
}
/// The paper's simulation experiment: for each cluster x group, PPipe, NP and DART-r plans
/// swept with the ppipe policy under Poisson and bursty arrivals (load factor 1.0 = PPipe's
/// plan), plus the PPipe plan with reactive batching; gains and low-class utilisation next
/// to the paper's, a CSV and an SVG chart.
#[derive(clap::Args, Clone, Debug)]
pub struct PaperArgs {
    #[command(flatten)]
    pub cases: crate::commands::plan::CaseArgs,
    /// A few minutes on 2 cores: groups 1 and 3 only and 5 s per point.
    #[arg(long)]
    pub quick: bool,
    /// Simulated time per sweep point [default: 30s; --quick: 5s].
    #[arg(long, value_parser = crate::commands::simulate::parse_duration)]
    pub duration: Option<f64>,
    /// Load-factor step.
    #[arg(long, default_value_t = 0.05)]
    pub step: f64,
    /// Coefficient of variation of bursty gaps.
    #[arg(long, default_value_t = 2.0)]
    pub cv: f64,
    /// Workload weights of the bursty runs (the paper's bursty mix).
    #[arg(long, value_delimiter = ',', default_value = "0.39,0.26,0.35")]
    pub bursty_weights: Vec<f64>,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Folder for paper.csv and paper.svg.
    #[arg(long, value_name = "DIR", default_value = "bench-paper")]
    pub out: std::path::PathBuf,
    #[command(flatten)]
    pub opts: crate::commands::plan::PlanArgs,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Runs `poolpipe bench paper`.
pub fn command(a: PaperArgs) -> Result<()> {
    let PaperArgs { cases, quick, duration, step, cv, bursty_weights, seed, out, opts, json } = a;
    let groups: Vec<usize> = if quick { vec![1, 3] } else { (1..=6).collect() };
    let (fleets, workloads) = cases.resolve(&groups);
    if !(cv.is_finite() && cv > 0.0) {
        anyhow::bail!("--cv {cv} must be a positive coefficient of variation");
    }
    let o = PaperOptions {
        profiles: cases.profiles,
        fleets,
        workloads,
        bursty_weights: Some(bursty_weights),
        cv,
        duration_s: duration.unwrap_or(if quick { 5.0 } else { 30.0 }),
        step,
        seed,
        plan: opts.options()?,
        out,
    };
    let report = run(&o, !json)?;
    crate::commands::print_report(&report, json, render)
}
