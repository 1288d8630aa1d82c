//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::auth::Scope;
use crate::detect::CpuidInfo;
use crate::eventlog_command::EventlogArgs;
use crate::inference::service::EngineChoice;
use crate::rootfs::{FsOverrides, RootFs};

/// Agent of the secure AI appliance.
#[derive(Debug, Parser)]
#[command(name = "appliance-agent", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Detect the hypervisor, container manager and GPU passthrough, and print the result.
    Detect(DetectArgs),
    /// Run the initrd steps before switch-root and record the platform for `serve`.
    Early(EarlyArgs),
    /// Replay a saved TCG event log and compare it with PCR values read from the TPM.
    Eventlog(EventlogArgs),
    /// Serve the local API.
    Serve(ServeArgs),
    /// Create, list and revoke API tokens in the token store.
    Token(TokenArgs),
}

/// Source of the files and CPUID values that the probes read.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Directory that every probe reads as `/`, such as the root/
    /// folder of a collected bundle.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// JSON file with CPUID values to use instead of querying the CPU.
    #[arg(long, value_name = "FILE")]
    pub cpuid: Option<PathBuf>,

    /// JSON file listing paths under --root that must read as absent or
    /// unreadable (EACCES).
    #[arg(long, value_name = "FILE", requires = "root")]
    pub fs_overrides: Option<PathBuf>,
}

impl ProbeArgs {
    /// Builds the filesystem view the probes read through.
    pub fn root_fs(&self) -> anyhow::Result<RootFs> {
        let Some(root) = &self.root else {
            return Ok(RootFs::host());
        };
        if !root.is_dir() {
            anyhow::bail!(
                "--root {} is not a directory. Pass the root/ folder of a collected bundle",
                root.display()
            );
        }
        let overrides = match &self.fs_overrides {
            Some(path) => FsOverrides::load(path)?,
            None => FsOverrides::default(),
        };
        Ok(RootFs::new(root.clone(), overrides))
    }

    /// Returns the CPUID values from --cpuid, or from the CPU.
    pub fn cpuid(&self) -> anyhow::Result<CpuidInfo> {
        match &self.cpuid {
            Some(path) => CpuidInfo::load(path),
            None => Ok(CpuidInfo::from_host()),
        }
    }
}

#[derive(Debug, Args)]
pub struct DetectArgs {
    /// Print the full result as JSON instead of a short summary.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub probe: ProbeArgs,

    /// Also write a replayable support bundle of every file the probes read
    /// into this new or empty directory.
    #[arg(long, value_name = "DIR")]
    pub collect: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EarlyArgs {
    /// Directory for the platform.json that `serve` reads after switch-root.
    #[arg(long, value_name = "DIR", default_value = "/run/appliance")]
    pub state_dir: PathBuf,

    /// Mount point of the root file system that switch-root will enter: the vault is
    /// mounted and clipboard agents are masked below it.
    #[arg(long, value_name = "DIR", default_value = "/sysroot")]
    pub sysroot: PathBuf,

    #[command(flatten)]
    pub probe: ProbeArgs,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// YAML configuration file. A missing file means the defaults.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/appliance/appliance.yaml"
    )]
    pub config: PathBuf,

    /// Directory holding the platform.json that `early` wrote.
    #[arg(long, value_name = "DIR", default_value = "/run/appliance")]
    pub state_dir: PathBuf,

    /// Engine behind /v1: `llama` loads the model from models.dir;
    /// `scripted:FILE` replays the token stream of a scripted-backend-v1
    /// JSON file instead of running a model, for testing API clients.
    #[arg(long, value_name = "ENGINE", default_value = "llama")]
    pub engine: EngineChoice,

    /// Terminal or file that shows the initial admin token, created when
    /// the token store is empty. Default: /dev/console, or stderr when there
    /// is no /dev/console.
    #[arg(long, value_name = "PATH")]
    pub console: Option<PathBuf>,

    /// Seconds between checks for clipboard agents and host channels in a
    /// VM; 0 turns the checks off, for development runs outside the
    /// appliance.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub host_channel_check_seconds: u64,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,

    /// Token store file. Default: auth.token_store from the configuration.
    #[arg(long, value_name = "FILE", global = true)]
    pub store: Option<PathBuf>,

    /// YAML configuration file that names the token store.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/appliance/appliance.yaml",
        global = true
    )]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it once on stdout.
    Create {
        /// Name that describes the token's use, such as the client using it.
        #[arg(long)]
        name: String,
        /// Permission of the token: admin for the admin API under /api,
        /// inference for the OpenAI-compatible API under /v1.
        #[arg(long, value_enum)]
        scope: Scope,
    },
    /// List the tokens: id, scope, creation time and name, never the secret.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by its id, as `token list` shows it.
    Revoke {
        /// Id of the token.
        id: String,
    },
}
