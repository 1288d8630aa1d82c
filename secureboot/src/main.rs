//! Command-line interface: lists UKI sections, predicts PCR 11 and signs and checks PCR 11
//! policies.

use std::error::Error as StdError;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use appliance_secureboot::pcrsig::{verify_pcrsig, PcrSigError};
use appliance_secureboot::signer::{check_uki_pcrpkey, sign_pcr11_policy, PemFileSigner};
use appliance_secureboot::{
    predict_pcr11, read_image, Error, Pcr11Options, Pcr11Prediction, PcrBank, PhasePath, Uki,
};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "appliance-secureboot", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Predict the PCR 11 values that booting a UKI produces, as `systemd-measure calculate`
    /// (systemd 257) computes them.
    Pcr11 {
        /// UKI to read.
        uki: PathBuf,
        /// Print JSON in the shape of `systemd-measure calculate --json=short`.
        #[arg(long)]
        json: bool,
        /// PCR bank to compute: sha1, sha256, sha384 or sha512. Repeat for several banks.
        /// Default: all four.
        #[arg(long = "bank", value_name = "BANK")]
        banks: Vec<PcrBank>,
        /// Colon-separated boot phases measured after the sections, such as
        /// enter-initrd:leave-initrd. Repeat for several paths. Default: the four paths from
        /// enter-initrd to ready that systemd-measure uses.
        #[arg(long = "phase", value_name = "PATH")]
        phases: Vec<PhasePath>,
        /// Profile of a multi-profile UKI that systemd-stub boots.
        #[arg(long, default_value_t = 0)]
        profile: u32,
    },
    /// List the PE sections of a UKI in file order.
    Sections {
        /// UKI to read.
        uki: PathBuf,
    },
    /// Check the signed PCR 11 policies in a UKI's .pcrsig section against this tool's PCR 11
    /// prediction and the .pcrpkey key, for each phase path that systemd-measure signs by
    /// default. Exits with 0 only if every check verifies.
    VerifyPcrsig {
        /// UKI to read.
        uki: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Profile of a multi-profile UKI whose sections are checked.
        #[arg(long, default_value_t = 0)]
        profile: u32,
    },
    /// Sign the predicted PCR 11 values of a UKI with an RSA private key and print the JSON
    /// for its .pcrsig section, byte for byte as `systemd-measure sign --json=short`
    /// (systemd 257) prints it. Fails if the UKI's .pcrpkey section contains another public
    /// key than the private key's.
    SignPcrPolicy {
        /// UKI to read.
        uki: PathBuf,
        /// RSA private key PEM file: "PRIVATE KEY" (PKCS #8) or "RSA PRIVATE KEY" (PKCS #1),
        /// without a passphrase.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// PCR bank to sign: sha1, sha256, sha384 or sha512. Repeat for several banks.
        /// Default: all four, like systemd-measure.
        #[arg(long = "bank", value_name = "BANK")]
        banks: Vec<PcrBank>,
        /// Colon-separated boot phases measured after the sections, such as
        /// enter-initrd:leave-initrd. Repeat for several paths. Default: the four paths from
        /// enter-initrd to ready that systemd-measure uses.
        #[arg(long = "phase", value_name = "PATH")]
        phases: Vec<PhasePath>,
        /// Profile of a multi-profile UKI whose sections are signed.
        #[arg(long, default_value_t = 0)]
        profile: u32,
        /// File to write the JSON to, replacing its content. Default: standard output.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// Builds the prediction options from the command line, keeping the defaults
/// (all banks, systemd-measure's phase paths) for options not given.
fn pcr11_options(banks: Vec<PcrBank>, phases: Vec<PhasePath>, profile: u32) -> Pcr11Options {
    let mut options = Pcr11Options {
        profile,
        ..Pcr11Options::default()
    };
    if !banks.is_empty() {
        options.banks = banks;
    }
    if !phases.is_empty() {
        options.phase_paths = phases;
    }
    options
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<(), Box<dyn StdError>> = match cli.command {
        Command::Pcr11 {
            uki,
            json,
            banks,
            phases,
            profile,
        } => {
            let options = pcr11_options(banks, phases, profile);
            run_pcr11(&uki, json, &options).map_err(Into::into)
        }
        Command::Sections { uki } => run_sections(&uki).map_err(Into::into),
        Command::VerifyPcrsig { uki, json, profile } => {
            return run_verify_pcrsig(&uki, json, profile);
        }
        Command::SignPcrPolicy {
            uki,
            key,
            banks,
            phases,
            profile,
            output,
        } => {
            let options = pcr11_options(banks, phases, profile);
            run_sign_pcr_policy(&uki, &key, &options, output.as_deref())
        }
    };

    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!(
                "appliance-secureboot: error: {}",
                error_chain(error.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}

fn run_pcr11(path: &Path, json: bool, options: &Pcr11Options) -> Result<(), Error> {
    let bytes = read_image(path)?;
    let uki = Uki::parse(&bytes)?;
    let prediction = predict_pcr11(&uki, options)?;
    if json {
        // The prediction contains only strings and integers, which always serialize.
        let text = prediction.to_json().unwrap_or_default();
        println!("{text}");
        return Ok(());
    }

    let measured = uki.measured_sections(options.profile)?;
    println!(
        "Sections measured into PCR 11 for profile {}, in measurement order:",
        options.profile
    );
    for entry in &measured {
        println!(
            "  {:<9} table index {:>3}  {:>10} bytes  ({})",
            entry.kind.name(),
            entry.section.index,
            entry.data.len(),
            entry.scope,
        );
    }
    println!();
    print_table(&prediction);
    Ok(())
}

fn print_table(prediction: &Pcr11Prediction) {
    let phase_width = prediction
        .banks
        .iter()
        .flat_map(|bank| &bank.phases)
        .map(|phase| phase.phase.as_str().len())
        .max()
        .unwrap_or(0)
        .max("PHASE".len());

    println!("{:<6}  {:<phase_width$}  PCR 11 VALUE", "BANK", "PHASE");
    for bank in &prediction.banks {
        for phase in &bank.phases {
            println!(
                "{:<6}  {:<phase_width$}  {}",
                bank.bank.name(),
                phase.phase.as_str(),
                phase.value.to_hex(),
            );
        }
    }
}

fn run_sections(path: &Path) -> Result<(), Error> {
    let bytes = read_image(path)?;
    let uki = Uki::parse(&bytes)?;
    println!(
        "{:>5}  {:<8}  {:>10}  {:>12}  {:>11}  {:>12}",
        "INDEX", "NAME", "RVA", "VIRTUAL SIZE", "FILE OFFSET", "RAW SIZE"
    );
    for section in uki.sections() {
        println!(
            "{:>5}  {:<8}  {:>#10x}  {:>#12x}  {:>#11x}  {:>#12x}",
            section.index,
            section.name(),
            section.virtual_address,
            section.virtual_size,
            section.pointer_to_raw_data,
            section.size_of_raw_data,
        );
    }
    Ok(())
}

/// Prints the PCR signature report; exits with 0 only if every check verified.
fn run_verify_pcrsig(path: &Path, json: bool, profile: u32) -> ExitCode {
    let report = read_image(path)
        .map_err(PcrSigError::from)
        .and_then(|bytes| verify_pcrsig(&Uki::parse(&bytes)?, profile));
    let report = match report {
        Ok(report) => report,
        Err(error) => {
            eprintln!("appliance-secureboot: error: {}", error_chain(&error));
            return ExitCode::FAILURE;
        }
    };

    if json {
        println!("{}", report.to_json());
    } else {
        print!("{report}");
    }
    if report.all_verified() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Signs the UKI's PCR 11 policies and writes the JSON with a final newline, as
/// systemd-measure does, to `output` or standard output.
fn run_sign_pcr_policy(
    uki_path: &Path,
    key_path: &Path,
    options: &Pcr11Options,
    output: Option<&Path>,
) -> Result<(), Box<dyn StdError>> {
    let signer = PemFileSigner::open(key_path)?;
    let bytes = read_image(uki_path)?;
    let uki = Uki::parse(&bytes)?;
    check_uki_pcrpkey(&uki, options.profile, &signer)?;
    let signed = sign_pcr11_policy(&uki, &signer, options)?;

    let mut json = signed.to_json()?;
    json.push('\n');
    match output {
        Some(path) => std::fs::write(path, json).map_err(|source| WriteError {
            path: path.to_owned(),
            source,
        })?,
        None => std::io::stdout().write_all(json.as_bytes())?,
    }
    Ok(())
}

/// A failure to write an output file.
#[derive(Debug, thiserror::Error)]
#[error("failed to write {}", path.display())]
struct WriteError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// Joins an error and its sources into one line, so that each cause appears once.
fn error_chain(error: &dyn StdError) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
