//! Times the vault's TPM unlock against systemd 257's on one swtpm, and reports which
//! implementation unseals which token.
//!
//! Each round of either side opens a TPM connection, reads the LUKS2 header, the token and the
//! signed PCR 11 policy, unseals the secret and checks it on the token's keyslot (PBKDF2, 1000
//! iterations) without mapping the volume. The agent's side runs its own `vault::tpm` and
//! `vault::luks` code, and systemd's side runs its `systemd-tpm2` cryptsetup token plugin
//! through libcryptsetup in this same process. The rounds alternate between the two so that
//! load from other processes hits both alike.
//!
//! It needs systemd 257's cryptsetup tools, so `make bench-vault` runs it inside the bench
//! tools tree (image/bench-tools):
//!
//! ```sh
//! make bench-vault BENCH_ROUNDS=50
//! ```

#[allow(dead_code)]
#[path = "../tests/support/pcr_policy.rs"]
mod pcr_policy;
#[allow(dead_code)]
#[path = "../tests/support/swtpm.rs"]
mod swtpm;
#[allow(dead_code)]
#[path = "../tests/support/vault_interop.rs"]
mod vault_interop;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

use vault_interop::DualVault;

#[derive(Parser)]
#[command(about = "Time the vault's TPM unlock against systemd 257's on one swtpm")]
struct Args {
    /// Timed rounds of each implementation, after two untimed warm-up rounds.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    rounds: u32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Implementation {
    Agent,
    Systemd,
}

impl Implementation {
    fn name(self) -> &'static str {
        match self {
            Self::Agent => "agent (vault::tpm)",
            Self::Systemd => "systemd 257 plugin",
        }
    }

    fn unlock(self, vault: &DualVault, token: u32) -> anyhow::Result<u32> {
        match self {
            Self::Agent => vault.unlock_with_agent(token),
            Self::Systemd => vault.unlock_with_systemd(token),
        }
    }
}

/// Sorted round times of one implementation on one token.
struct Timings {
    implementation: Implementation,
    token_owner: &'static str,
    rounds: Vec<Duration>,
}

impl Timings {
    fn median(&self) -> Duration {
        let n = self.rounds.len();
        if n % 2 == 1 {
            self.rounds[n / 2]
        } else {
            (self.rounds[n / 2 - 1] + self.rounds[n / 2]) / 2
        }
    }

    /// Returns the nearest-rank 90th percentile.
    fn p90(&self) -> Duration {
        let rank = (self.rounds.len() * 9).div_ceil(10);
        self.rounds[rank.max(1) - 1]
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("vault_unlock_bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the interop checks and the timed rounds. Returns false when an implementation could
/// not unlock its own token, which makes the timings meaningless.
fn run(args: &Args) -> anyhow::Result<bool> {
    let vault = DualVault::create()?;
    let tokens = [
        ("agent", vault.agent_token),
        ("systemd", vault.systemd_token),
    ];
    let implementations = [Implementation::Agent, Implementation::Systemd];

    println!("interop (one unlock each; keyslot or error):");
    let mut working = Vec::new();
    for implementation in implementations {
        for (owner, token) in tokens {
            let outcome = implementation.unlock(&vault, token);
            let text = match &outcome {
                Ok(keyslot) => format!("unlocked keyslot {keyslot}"),
                Err(error) => format!("failed: {error:#}"),
            };
            println!(
                "  {:<20} on the {owner:<7} token {token}: {text}",
                implementation.name()
            );
            if outcome.is_ok() {
                working.push((implementation, owner, token));
            }
        }
    }
    let own_tokens_work = working
        .iter()
        .any(|(i, o, _)| *i == Implementation::Agent && *o == "agent")
        && working
            .iter()
            .any(|(i, o, _)| *i == Implementation::Systemd && *o == "systemd");
    if !own_tokens_work {
        eprintln!(
            "vault_unlock_bench: no timings, because an implementation failed to unlock its own \
             token (see the interop lines above)"
        );
        return Ok(false);
    }

    let mut timings: Vec<Timings> = working
        .iter()
        .map(|(implementation, owner, _)| Timings {
            implementation: *implementation,
            token_owner: owner,
            rounds: Vec::new(),
        })
        .collect();
    for round in 0..args.rounds + 2 {
        // Alternate which pair goes first, so neither always runs on a freshly idle swtpm.
        let order: Vec<usize> = if round % 2 == 0 {
            (0..working.len()).collect()
        } else {
            (0..working.len()).rev().collect()
        };
        for index in order {
            let (implementation, _, token) = working[index];
            let start = Instant::now();
            implementation.unlock(&vault, token)?;
            let elapsed = start.elapsed();
            if round >= 2 {
                timings[index].rounds.push(elapsed);
            }
        }
    }
    for timing in &mut timings {
        timing.rounds.sort();
    }

    println!();
    println!("unseal + keyslot check, {} rounds each (ms):", args.rounds);
    println!(
        "  {:<20} {:<8} {:>8} {:>8} {:>8} {:>8}",
        "implementation", "token", "median", "p90", "min", "max"
    );
    for timing in &timings {
        println!(
            "  {:<20} {:<8} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            timing.implementation.name(),
            timing.token_owner,
            millis(timing.median()),
            millis(timing.p90()),
            millis(timing.rounds[0]),
            millis(timing.rounds[timing.rounds.len() - 1]),
        );
    }
    let own = |implementation: Implementation, owner: &str| {
        timings
            .iter()
            .find(|t| t.implementation == implementation && t.token_owner == owner)
    };
    if let (Some(agent), Some(systemd)) = (
        own(Implementation::Agent, "agent"),
        own(Implementation::Systemd, "systemd"),
    ) {
        println!();
        println!(
            "ratio agent/systemd, each on its own token: median {:.2}, p90 {:.2}",
            millis(agent.median()) / millis(systemd.median()),
            millis(agent.p90()) / millis(systemd.p90()),
        );
    }
    Ok(true)
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
