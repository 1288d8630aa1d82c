//! `serve`: the local API server that runs after switch-root.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sd_notify::NotifyState;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::api::{self, ApiState};
use crate::boot_state;
use crate::cli::ServeArgs;
use crate::config;
use crate::detect::{self, CpuidInfo, Detection};
use crate::inference::service::{EngineSettings, InferenceService, ServiceState};
use crate::measurements;
use crate::rootfs::RootFs;
use crate::{early, platform};

/// Time that open connections get to finish after a stop signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the server until SIGTERM or SIGINT.
pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let config = config::load(&args.config)?;
    if args.config.exists() {
        info!(path = %args.config.display(), "configuration loaded");
    } else {
        info!(path = %args.config.display(), "configuration file not found, using the defaults");
    }

    let addresses = config::merge_listen(&config.listen, &credential_addresses());
    let detection = load_detection(&args.state_dir);

    let mut listeners = Vec::with_capacity(addresses.len());
    for address in &addresses {
        listeners.push(bind(*address, &args.config).await?);
    }
    let bound: Vec<String> = listeners
        .iter()
        .filter_map(|listener| listener.local_addr().ok())
        .map(|address| address.to_string())
        .collect();

    let boot = boot_state::read(&RootFs::host());
    info!(
        secure_boot = ?boot.secure_boot,
        tpm_present = boot.tpm.present,
        tpm_device = boot.tpm.device.as_deref().unwrap_or("none"),
        "boot state read"
    );
    let measurements = match measurements::read_report(&args.state_dir) {
        Ok(report) => {
            info!(verdict = ?report.verdict, "measurement report from early boot loaded");
            Some(report)
        }
        Err(err) => {
            warn!(error = %format!("{err:#}"), "no measurement report from early boot");
            None
        }
    };
    let settings =
        EngineSettings::from_config(args.engine.clone(), &config, &detection, &RootFs::host());
    info!(
        engine = ?settings.choice,
        models_dir = %settings.models.dir.display(),
        threads = settings.threads,
        context_tokens = settings.context_tokens,
        gpu_layers = settings.gpu_layers,
        queue_size = config.inference.queue_size,
        "starting the inference engine"
    );
    let inference = InferenceService::start(settings, config.inference.queue_size);
    let inference_state = inference.subscribe();
    let router = api::router(Arc::new(ApiState {
        detection,
        config,
        boot,
        measurements,
        inference: Some(inference),
    }));
    let (stop_sender, stop_receiver) = watch::channel(false);
    let mut servers = JoinSet::new();
    for listener in listeners {
        let mut stop = stop_receiver.clone();
        let server = axum::serve(listener, router.clone()).with_graceful_shutdown(async move {
            // An error means the sender is gone, which also means stop.
            let _ = stop.wait_for(|stopped| *stopped).await;
        });
        servers.spawn(async move { server.await });
    }

    info!(addresses = %bound.join(", "), "API server started");
    tokio::spawn(report_readiness(inference_state, bound.join(", ")));

    let result = wait_for_stop(&mut servers).await;

    notify(&[NotifyState::Stopping, NotifyState::Status("Stopping")]);
    // The receivers only fail to get this when every server already ended.
    let _ = stop_sender.send(true);
    if tokio::time::timeout(SHUTDOWN_GRACE, drain(&mut servers))
        .await
        .is_err()
    {
        warn!(
            grace_seconds = SHUTDOWN_GRACE.as_secs(),
            "connections still open after the grace period, closing them"
        );
        servers.abort_all();
    }
    info!("API server stopped");
    result
}

/// Sends systemd the service's progress as `STATUS=`, and `READY=1` once
/// the model is loaded, because the appliance is not ready before it can
/// run a request.
async fn report_readiness(mut state: watch::Receiver<ServiceState>, addresses: String) {
    let mut ready_sent = false;
    loop {
        let current = state.borrow_and_update().clone();
        let status = format!("{}; API on {addresses}", current.describe());
        if matches!(current, ServiceState::Ready(_)) && !ready_sent {
            notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
            ready_sent = true;
        } else {
            notify(&[NotifyState::Status(&status)]);
        }
        if state.changed().await.is_err() {
            return;
        }
    }
}

/// Waits for SIGTERM or SIGINT, or for a server to end by itself, which is
/// an error.
async fn wait_for_stop(servers: &mut JoinSet<std::io::Result<()>>) -> anyhow::Result<()> {
    let mut terminate =
        signal(SignalKind::terminate()).context("failed to install the SIGTERM handler")?;
    let mut interrupt =
        signal(SignalKind::interrupt()).context("failed to install the SIGINT handler")?;

    tokio::select! {
        _ = terminate.recv() => {
            info!(signal = "SIGTERM", "stop requested");
            Ok(())
        }
        _ = interrupt.recv() => {
            info!(signal = "SIGINT", "stop requested");
            Ok(())
        }
        Some(ended) = servers.join_next() => {
            let reason = match ended {
                Ok(Ok(())) => "ended without a stop signal".to_owned(),
                Ok(Err(err)) => err.to_string(),
                Err(err) => err.to_string(),
            };
            error!(error = %reason, "an API listener failed");
            anyhow::bail!("an API listener failed: {reason}")
        }
    }
}

async fn drain(servers: &mut JoinSet<std::io::Result<()>>) {
    while let Some(ended) = servers.join_next().await {
        match ended {
            Ok(Ok(())) => {}
            Ok(Err(err)) => error!(error = %err, "API listener ended with an error"),
            Err(err) => error!(error = %err, "API listener task failed"),
        }
    }
}

async fn bind(address: SocketAddr, config_path: &Path) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(address).await.with_context(|| {
        format!(
            "failed to listen on {address}. Stop the process that uses it, or change `listen` in {} \
             or the {} credential",
            config_path.display(),
            config::LISTEN_CREDENTIAL
        )
    })?;
    let local = listener.local_addr().unwrap_or(address);
    if is_network_reachable(local) {
        warn!(
            address = %local,
            "listening on a non-loopback address: the API has no authentication and is reachable from the network"
        );
    }
    info!(address = %local, "listening");
    Ok(listener)
}

/// True unless the address is on a loopback interface. IPv4-mapped IPv6
/// addresses such as `::ffff:127.0.0.1` count as their IPv4 address.
fn is_network_reachable(address: SocketAddr) -> bool {
    !address.ip().to_canonical().is_loopback()
}

/// Reads extra listen addresses from the systemd credential. An invalid
/// credential is logged and ignored as a whole, so the API stays on the
/// configured addresses.
fn credential_addresses() -> Vec<SocketAddr> {
    let Some(directory) = std::env::var_os("CREDENTIALS_DIRECTORY") else {
        return Vec::new();
    };
    match config::listen_credential(Path::new(&directory)) {
        Ok(addresses) => {
            if !addresses.is_empty() {
                info!(
                    credential = config::LISTEN_CREDENTIAL,
                    count = addresses.len(),
                    "listen addresses added from the credential"
                );
            }
            addresses
        }
        Err(err) => {
            error!(error = %err, "ignoring the listen credential");
            Vec::new()
        }
    }
}

/// Uses the platform state from `early`, or runs detection when that state
/// is missing or invalid.
fn load_detection(state_dir: &Path) -> Detection {
    match platform::read(state_dir) {
        Ok(state) => {
            info!(
                path = %platform::platform_file(state_dir).display(),
                detected_at = state.detected_at,
                vm = %state.detection.vm,
                "platform state from early boot loaded"
            );
            state.detection
        }
        Err(err) => {
            warn!(error = %format!("{err:#}"), "platform state from early boot unavailable, running detection now");
            let detection = detect::run(&RootFs::host(), &CpuidInfo::from_host());
            early::log_detection(&detection);
            detection
        }
    }
}

fn notify(states: &[NotifyState]) {
    // Outside systemd there is no NOTIFY_SOCKET and this does nothing.
    if let Err(err) = sd_notify::notify(false, states) {
        warn!(error = %err, "failed to notify systemd");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_not_reachable() {
        for text in [
            "127.0.0.1:8480",
            "127.0.0.2:1",
            "[::1]:8480",
            "[::ffff:127.0.0.1]:8480",
        ] {
            let address: SocketAddr = text.parse().expect("socket address");
            assert!(!is_network_reachable(address), "{text}");
        }
    }

    #[test]
    fn other_addresses_reachable() {
        for text in [
            "0.0.0.0:8480",
            "[::]:8480",
            "192.0.2.10:8480",
            "[2001:db8::1]:8480",
        ] {
            let address: SocketAddr = text.parse().expect("socket address");
            assert!(is_network_reachable(address), "{text}");
        }
    }
}
