//! `poolpipe devices`: every GPU adapter wgpu finds, with its key limits and class label.

use anyhow::Result;
use poolpipe_engine::gpu::list_adapters;

/// List every GPU adapter wgpu finds (all backends), with its key limits and its device
/// class label (from the class file, else derived from the adapter name).
#[derive(clap::Args, Clone, Debug)]
pub struct DevicesArgs {
    /// Class file (TOML, [[class]] tables with name, match and optional backend) [default:
    /// $POOLPIPE_CLASSES, else ~/.config/poolpipe/classes.toml when it exists].
    #[arg(long, value_name = "FILE")]
    pub classes: Option<std::path::PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `poolpipe devices`.
pub fn command(a: DevicesArgs) -> Result<()> {
    let DevicesArgs { classes, json } = a;
    devices(classes.as_deref(), json)
}

fn devices(classes: Option<&std::path::Path>, json: bool) -> Result<()> {
    let list = list_adapters();
    if list.is_empty() {
        return Err(poolpipe_engine::EngineError::NoAdapter.into());
    }
    let cfg = crate::classes::ClassConfig::load(classes)?;
    let labels: Vec<_> = list.iter().map(|a| cfg.label(a)).collect();
    if json {
        let adapters: Vec<serde_json::Value> = list
            .iter()
            .zip(&labels)
            .map(|(a, (class, source))| {
                let mut v = serde_json::to_value(a).expect("adapter descriptions serialize");
                v["class"] = serde_json::json!(class);
                v["class_source"] = serde_json::json!(source);
                v
            })
            .collect();
        println!("{}", serde_json::json!({ "adapters": adapters, "class_file": cfg.path }));
        return Ok(());
    }
    println!(
        "{:<3} {:<36} {:<12} {:<8} {:<7} {:<13} {:>10} {:>10} {:>6}  driver",
        "#", "name", "class", "vendor", "backend", "type", "max buffer", "max bind", "ts"
    );
    for (a, (class, source)) in list.iter().zip(&labels) {
        let mib = |b: u64| format!("{} MiB", b / (1024 * 1024));
        let class = if *source == crate::classes::LabelSource::Config { format!("{class}*") } else { class.clone() };
        println!(
            "{:<3} {:<36} {:<12} {:<8} {:<7} {:<13} {:>10} {:>10} {:>6}  {}",
            a.index,
            a.name,
            class,
            a.vendor,
            a.backend,
            a.device_type,
            mib(a.limits.max_buffer_size),
            mib(a.limits.max_storage_buffer_binding_size),
            if a.limits.timestamp_queries { "yes" } else { "no" },
            a.driver
        );
    }
    println!("\nselect one with --device INDEX | NAME | vendor:NAME | type:cpu (ts: GPU timestamp queries)");
    match &cfg.path {
        Some(p) => println!("class: * from {}, others derived from the adapter name", p.display()),
        None => println!("class: derived from the adapter name (set your own with a class file, see --help)"),
    }
    Ok(())
}
