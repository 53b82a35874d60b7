//! `autoplan serve-tps`: the native TPS behind protocol v1 (docs/tps-protocol.md), for a loop
//! in another process or on another machine (`autoplan plan --tps FILE`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use tps_api::Tps;
use tps_api::protocol::Protocol;
use tps_core::dose::calibration::DensityCurve;
use tps_core::dose::model::BeamModel;
use tps_core::{NativeSettings, NativeTps};
use tps_utps_bridge::gateway::{CaseOpener, Config, Gateway, Limits};

use crate::args::{BeamArgs, MachineArgs};

/// Serve the native TPS over the TPS protocol (v1) until Ctrl-C.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address to listen on (loopback by default; another address serves the network).
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub addr: SocketAddr,
    /// Environment variable holding the bearer token every request must carry.
    #[arg(long, default_value = "AUTOPLAN_TPS_TOKEN")]
    pub token_env: String,
    /// Serve without a token (loopback addresses only).
    #[arg(long)]
    pub local_only_no_token: bool,
    /// Directory whose patient directories clients may open by path (default: uploads only).
    #[arg(long)]
    pub patients_root: Option<PathBuf>,
    /// Most cases open at once (each holds its influence matrix in memory).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_cases: u16,
    /// Seconds a case may stay idle before it is closed.
    #[arg(long, default_value_t = 1800, value_parser = clap::value_parser!(u32).range(1..=604_800))]
    pub idle_s: u32,
    /// Largest request (an uploaded patient), MiB.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=8192))]
    pub max_body_mib: u32,
    #[command(flatten)]
    pub machine: MachineArgs,
    #[command(flatten)]
    pub beams: BeamArgs,
}

/// Opens native cases on patient directories.
struct NativeOpener {
    model: &'static BeamModel,
    curve: DensityCurve,
    settings: NativeSettings,
    /// The server's beam options, applied over each case's protocol.
    beams: BeamArgs,
}

impl CaseOpener for NativeOpener {
    fn name(&self) -> String {
        "native".into()
    }

    fn open(&self, patient: &Path, protocol: Protocol) -> tps_api::Result<Box<dyn Tps>> {
        let p = patient_model::patient_files::load(patient)?;
        let protocol = self.beams.apply_to(protocol)?;
        // A misspelt metric is refused when the case opens, as `plan` does.
        protocol.check_metric_structures(&p)?;
        Ok(Box::new(NativeTps::open(
            p,
            protocol,
            self.model,
            &self.curve,
            self.settings.clone(),
        )?))
    }
}

/// Runs `autoplan serve-tps`.
pub fn run(a: &Args) -> Result<()> {
    let token = match std::env::var(&a.token_env) {
        Ok(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
        _ if a.local_only_no_token => {
            if !a.addr.ip().is_loopback() {
                bail!(
                    "--local-only-no-token serves loopback addresses only, not {}; set {} to a \
                     token to serve the network",
                    a.addr,
                    a.token_env
                );
            }
            None
        }
        _ => bail!(
            "{} is not set: set it to the token clients must send (e.g. `export {}=$(head -c 24 \
             /dev/urandom | base64)`), or pass --local-only-no-token on a loopback address",
            a.token_env,
            a.token_env
        ),
    };
    if let Some(root) = &a.patients_root
        && !root.is_dir()
    {
        bail!("--patients-root {}: no such directory", root.display());
    }
    let settings = NativeSettings::default();
    // Options outside their ranges stop the server now, not at the first case.
    a.beams.check()?;
    let (model, curve) = a.machine.load()?;
    // One machine for the life of the server, shared by every case.
    let model: &'static BeamModel = Box::leak(Box::new(model));
    let opener = Arc::new(NativeOpener {
        model,
        curve,
        settings,
        beams: a.beams.clone(),
    });
    let config = Config {
        token: token.clone(),
        patients_root: a.patients_root.clone(),
        limits: Limits {
            max_body_bytes: a.max_body_mib as usize * (1 << 20),
            max_cases: usize::from(a.max_cases),
            idle: Duration::from_secs(u64::from(a.idle_s)),
            ..Limits::default()
        },
        server: format!("autoplan {}", env!("CARGO_PKG_VERSION")),
    };
    let stop = crate::interrupt::stop_flag();
    let gateway = Gateway::spawn(a.addr, opener, config)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", a.addr))?;
    out!(
        "serving the native TPS on {} (protocol v1, {}); Ctrl-C stops",
        gateway.url(),
        if token.is_some() {
            format!("bearer token from {}", a.token_env)
        } else {
            "no token, loopback only".to_string()
        }
    );
    while !stop.is_raised() {
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(gateway);
    out!("stopped");
    Ok(())
}
