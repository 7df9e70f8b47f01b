//! `poolpipe certs`: the cluster's certificates for mutual TLS between nodes.

use anyhow::{Context, Result};

/// `poolpipe certs` subcommands.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum CertsCmd {
    /// Create a cluster CA: DIR/ca.pem (give it to every node) and DIR/ca.key (keep it safe;
    /// only `certs issue` needs it).
    Init(InitArgs),
    /// Issue a node certificate signed by the cluster CA: OUT/NAME.pem and OUT/NAME.key.
    Issue(IssueArgs),
}

/// Runs `poolpipe certs`.
pub fn command(c: CertsCmd) -> Result<()> {
    match c {
        CertsCmd::Init(a) => init(a),
        CertsCmd::Issue(a) => issue(a),
    }
}

/// Create a cluster CA: DIR/ca.pem (give it to every node) and DIR/ca.key (keep it safe;
/// only `certs issue` needs it).
#[derive(clap::Args, Clone, Debug)]
pub struct InitArgs {
    /// Folder for ca.pem and ca.key.
    #[arg(long, value_name = "DIR", default_value = "certs")]
    pub out: std::path::PathBuf,
    /// Replace an existing CA (every node certificate it signed stops being accepted).
    #[arg(long)]
    pub force: bool,
}

/// Issue a node certificate signed by the cluster CA: OUT/NAME.pem and OUT/NAME.key.
#[derive(clap::Args, Clone, Debug)]
pub struct IssueArgs {
    /// Node name, also its TLS name (letters, digits, '-', '.'), e.g. worker-1.
    pub name: String,
    /// Folder of the CA (ca.pem, ca.key).
    #[arg(long, value_name = "DIR", default_value = "certs")]
    pub ca: std::path::PathBuf,
    /// Folder for the node's files [default: the CA's folder].
    #[arg(long, value_name = "DIR")]
    pub out: Option<std::path::PathBuf>,
    /// Replace an existing certificate of that name.
    #[arg(long)]
    pub force: bool,
}

/// Creates the CA.
fn init(a: InitArgs) -> Result<()> {
    let InitArgs { out, force } = a;
    use poolpipe_transport::tls;
    if out.join("ca.key").exists() && !force {
        anyhow::bail!(
            "{} already holds a CA; keep it (node certificates depend on it) or pass --force to replace it",
            out.display()
        );
    }
    let (cert, key) = tls::save(&out, "ca", &tls::init_ca()?)?;
    println!("cluster CA written: {} (share with every node) and {} (keep private)", cert.display(), key.display());
    Ok(())
}

/// Issues a node certificate.
fn issue(a: IssueArgs) -> Result<()> {
    let IssueArgs { name, ca, out, force } = a;
    use poolpipe_transport::tls;
    let out = out.unwrap_or_else(|| ca.clone());
    if out.join(format!("{name}.key")).exists() && !force {
        anyhow::bail!("{} already has a certificate for '{name}'; pass --force to replace it", out.display());
    }
    let ca_id = tls::load(&ca, "ca").with_context(|| {
        format!("reading the cluster CA in {} (create one with `poolpipe certs init --out DIR`)", ca.display())
    })?;
    let (cert, key) = tls::save(&out, &name, &tls::issue(&ca_id.key_pem, &name)?)?;
    println!("certificate of '{name}' written: {} and {}", cert.display(), key.display());
    Ok(())
}
