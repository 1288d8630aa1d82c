//! `serve`: the local API server that runs after switch-root.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use sd_notify::NotifyState;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::api::vm_status::VmFacts;
use crate::api::{self, ApiState};
use crate::auth::bootstrap::{self, Console};
use crate::auth::{AllowedHosts, Auth, TokenStore};
use crate::boot_state;
use crate::cli::ServeArgs;
use crate::config;
use crate::detect::{self, CpuidInfo, Detection};
use crate::hardening::{self, control::SystemControl};
use crate::inference::service::{EngineSettings, ServiceState};
use crate::measurements;
use crate::measurements::tpm::DEVICE_TCTI;
use crate::rootfs::RootFs;
use crate::vault::service::VaultService;
use crate::vault::VaultState;
use crate::vm_facts::{self, TpmVendor};
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
    disable_core_dumps();
    // Installed first, so a stop signal during start-up, which takes a
    // moment while the token store and the TPM are read, still stops cleanly.
    let mut terminate =
        signal(SignalKind::terminate()).context("failed to install the SIGTERM handler")?;
    let mut interrupt =
        signal(SignalKind::interrupt()).context("failed to install the SIGINT handler")?;
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
    let vault = VaultService::load(args.state_dir.clone());
    let vault_open = vault.is_open_now();
    let auth = Arc::new(start_auth(&config, &addresses, args, vault_open)?);
    let is_vm = detection.is_vm();
    let tpm = read_tpm_vendor(&boot, is_vm);
    let sizing = vm_facts::read_sizing(&RootFs::host(), is_vm);
    for warning in &sizing.warnings {
        warn!(
            vcpus = sizing.vcpus,
            memory_mib = sizing.memory_mib,
            "{warning}"
        );
    }
    let mut state = ApiState::new(
        detection,
        config,
        args.config.clone(),
        boot,
        measurements,
        auth,
        vault,
    );
    {
        let mut facts = state
            .facts
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        facts.tpm = tpm;
        facts.sizing = sizing;
        if let Ok(report) = hardening::read_report(&args.state_dir) {
            info!(
                clipboard_agents = report.clipboard_agents.len(),
                actions = report.actions.len(),
                "clipboard agent report from early boot loaded"
            );
            facts.hardening = report;
        }
    }
    if is_vm && args.host_channel_check_seconds > 0 {
        let interval = Duration::from_secs(args.host_channel_check_seconds);
        tokio::spawn(check_host_channels(state.facts.clone(), interval));
    }
    state.engine = Some(settings);
    if !state.models_in_vault() || vault_open {
        state.start_inference();
    } else {
        info!("the vault is closed: inference starts once it is opened");
    }
    let state = Arc::new(state);
    let router = api::router(state.clone());
    let (stop_sender, stop_receiver) = watch::channel(false);
    let mut servers = JoinSet::new();
    for listener in listeners {
        let mut stop = stop_receiver.clone();
        // The peer address keys the limit on failed token attempts.
        let service = router
            .clone()
            .into_make_service_with_connect_info::<SocketAddr>();
        let server = axum::serve(listener, service).with_graceful_shutdown(async move {
            // An error means the sender is gone, which also means stop.
            let _ = stop.wait_for(|stopped| *stopped).await;
        });
        servers.spawn(async move { server.await });
    }

    info!(addresses = %bound.join(", "), "API server started");
    tokio::spawn(report_readiness(state, bound.join(", ")));

    let result = wait_for_stop(&mut servers, &mut terminate, &mut interrupt).await;

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

/// Sends systemd the service's progress as `STATUS=`, and `READY=1` once the vault is open
/// and the model is loaded, because the appliance cannot run a request before. The API
/// answers meanwhile (the unit waits with TimeoutStartSec=infinity), so the owner can
/// open a closed vault through it.
async fn report_readiness(state: Arc<ApiState>, addresses: String) {
    let mut ready_sent = false;
    let mut last_status = String::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        ticker.tick().await;
        let vault = state.vault.status().await;
        let vault_blocks = state.models_in_vault() && vault.state != VaultState::Open;
        let (ready, progress) = if vault_blocks {
            (false, "Waiting for the vault to be opened".to_owned())
        } else {
            match state.inference() {
                Some(service) => {
                    let current = service.state();
                    (
                        matches!(current, ServiceState::Ready(_)),
                        current.describe(),
                    )
                }
                None => (true, "No inference engine".to_owned()),
            }
        };
        let status = format!("{progress}; API on {addresses}");
        if ready && !ready_sent {
            notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
            info!(status, "service ready");
            ready_sent = true;
        } else if status != last_status {
            notify(&[NotifyState::Status(&status)]);
        }
        last_status = status;
    }
}

/// Sets up token checks. With the vault open, the store inside it is used (and the initial
/// admin token created and shown when it has none); with the vault closed, the copy of the
/// admin tokens outside it. A store that cannot be used does not stop the server: its
/// read-only routes stay useful, and every token is rejected.
fn start_auth(
    config: &config::Config,
    listen: &[SocketAddr],
    args: &ServeArgs,
    vault_open: bool,
) -> anyhow::Result<Auth> {
    let console = match &args.console {
        Some(path) => Console::Path(path.clone()),
        None => Console::detect(),
    };
    let in_vault = config
        .auth
        .token_store
        .starts_with(crate::vault::MOUNT_POINT);
    let store = if vault_open || !in_vault {
        open_token_store(&config.auth.token_store, &console)
    } else {
        let copy = TokenStore::new(PathBuf::from(crate::auth::LOCKED_STATE_TOKEN_STORE));
        info!(
            store = %copy.path().display(),
            "the vault is closed: admin tokens are checked against their copy outside it"
        );
        copy
    };
    let hosts = AllowedHosts::new(&config.allowed_hosts, listen);
    info!(hosts = %hosts.names().join(", "), "accepted Host names");
    Auth::new(store, hosts).context("failed to get random bytes for the CSRF key")
}

/// Opens the token store at `path`, creates and shows the initial admin token when it has
/// none, and refreshes the copy of the admin tokens kept outside the vault.
pub fn open_token_store(path: &Path, console: &Console) -> TokenStore {
    let store = TokenStore::new(path.to_owned());
    match bootstrap::ensure_admin_token(&store, console) {
        Ok(Some(_)) => {}
        Ok(None) => match store.list() {
            Ok(tokens) => info!(
                store = %store.path().display(),
                tokens = tokens.len(),
                "token store loaded"
            ),
            Err(err) => error!(error = %err, "token store unusable, every token is rejected"),
        },
        Err(err) => error!(error = %err, "no initial admin token, every token is rejected"),
    }
    if path.starts_with(crate::vault::MOUNT_POINT) {
        let copy = TokenStore::new(PathBuf::from(crate::auth::LOCKED_STATE_TOKEN_STORE));
        match store.copy_scope_to(crate::auth::Scope::Admin, &copy) {
            Ok(count) => {
                info!(copy = %copy.path().display(), count, "admin token hashes copied outside the vault")
            }
            Err(err) => {
                warn!(error = %err, "could not copy the admin token hashes outside the vault")
            }
        }
    }
    store
}

/// Reads the TPM's manufacturer through the resource manager. A failure is
/// logged and reported as an unknown manufacturer.
fn read_tpm_vendor(boot: &boot_state::BootState, is_vm: bool) -> TpmVendor {
    let manufacturer = match &boot.tpm.device {
        Some(_) => match vm_facts::read_tpm_manufacturer(DEVICE_TCTI) {
            Ok(manufacturer) => Some(manufacturer),
            Err(err) => {
                warn!(error = %err, "TPM manufacturer unknown");
                None
            }
        },
        None => None,
    };
    let vendor = vm_facts::judge_tpm(manufacturer, is_vm);
    info!(
        manufacturer = vendor.manufacturer.as_deref().unwrap_or("unknown"),
        looks_virtual = vendor.looks_virtual,
        basis = %vendor.basis,
        "TPM vendor"
    );
    vendor
}

/// Finds and disables clipboard agents, and records host channels, every
/// `interval`, because agents respawn and users log in again.
async fn check_host_channels(facts: Arc<RwLock<VmFacts>>, interval: Duration) {
    info!(
        interval_seconds = interval.as_secs(),
        "host channel checks started"
    );
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let checked = tokio::task::spawn_blocking(|| {
            let fs = RootFs::host();
            let target = hardening::Target {
                proc_fs: &fs,
                files_fs: &fs,
            };
            hardening::check(&target, &mut SystemControl::default())
        })
        .await;
        let report = match checked {
            Ok(report) => report,
            Err(err) => {
                error!(error = %err, "host channel check failed");
                continue;
            }
        };
        let mut facts = facts
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for finding in report
            .clipboard_agents
            .iter()
            .chain(&report.host_channels)
            .filter(|finding| {
                !facts.hardening.clipboard_agents.contains(finding)
                    && !facts.hardening.host_channels.contains(finding)
            })
        {
            warn!(
                agent = %finding.agent,
                pid = finding.pid.unwrap_or(0),
                source = finding.source.as_deref().unwrap_or(""),
                category = ?finding.category,
                "host channel found"
            );
        }
        for folder in report
            .shared_folders
            .iter()
            .filter(|folder| !facts.hardening.shared_folders.contains(folder))
        {
            warn!(mount_point = %folder.mount_point, fs_type = %folder.fs_type, "host-shared folder mounted");
        }
        facts.hardening.merge(report);
    }
}

/// Keeps tokens and keys out of core dumps and away from ptrace by
/// non-root processes, also when the service runs without `LimitCORE=0`.
fn disable_core_dumps() {
    // SAFETY: prctl(PR_SET_DUMPABLE) only changes a flag of this process
    // and reads no memory of ours.
    let result = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if result != 0 {
        warn!(error = %std::io::Error::last_os_error(), "failed to mark the process as not dumpable");
    }
}

/// Waits for SIGTERM or SIGINT, or for a server to end by itself, which is
/// an error.
async fn wait_for_stop(
    servers: &mut JoinSet<std::io::Result<()>>,
    terminate: &mut Signal,
    interrupt: &mut Signal,
) -> anyhow::Result<()> {
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
            "listening on a non-loopback address: the API is reachable from the network"
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
