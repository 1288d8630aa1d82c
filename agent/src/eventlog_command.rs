//! `eventlog`: replays a saved TCG event log offline and compares it with PCR values read from
//! the TPM.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use appliance_secureboot::eventlog::{
    compare, EventLog, HashAlgorithm, Outcome, PcrComparison, RecordedPcr, Replay,
};
use appliance_secureboot::pcr::to_hex;
use appliance_secureboot::PcrIndex;
use clap::Args;
use serde::Serialize;

/// Exit status when every compared PCR matches, or when `--pcrs` was not given.
pub const EXIT_MATCH: u8 = 0;
/// Exit status when at least one compared PCR does not match.
pub const EXIT_MISMATCH: u8 = 1;
/// Exit status when the log or the `--pcrs` file cannot be read or is invalid.
pub const EXIT_INVALID_INPUT: u8 = 2;
/// Exit status when nothing mismatches but at least one requested PCR is unverifiable.
pub const EXIT_UNVERIFIABLE: u8 = 3;

/// Highest PCR index of a TPM 2.0 PC client.
const MAX_PCR: u32 = 23;

const AFTER_HELP: &str = "\
The --pcrs file is a JSON object with one key per bank: sha1, sha256, sha384, sha512 or
sm3_256. Each bank maps PCR numbers from 0 to 23, written as strings, to the value read from
the TPM in hexadecimal, with or without a 0x prefix:

  {\"sha256\": {\"0\": \"3d458cfe...\", \"11\": \"a1b2c3d4...\"}, \"sha1\": {\"7\": \"...\"}}

For each PCR in the file, the result is match, mismatch or unverifiable. In a mismatch,
expected is the value from --pcrs, actual is the value that the log replays to, and the
events are the records that extended the PCR. Unverifiable means that the log can neither
confirm nor refute the value: it has no digests for the bank (a SHA-1-only log has no sha256
digests), records of the PCR lack a digest for it, this program cannot compute the bank's
hash (sm3_256), or the PCR is a DRTM PCR (17 to 22).

The log contains only measurements made through the firmware's TCG2 protocol, by the firmware
and by boot loaders such as systemd-stub, before Linux takes over. Values that software
extends later, such as systemd-pcrphase's boot phases in PCR 11 or IMA's measurements in
PCR 10, are not in it, so those PCRs mismatch once extended.

Exit status:
  0  every compared PCR matches, or --pcrs was not given
  1  at least one compared PCR does not match
  2  invalid input: the log or the --pcrs file cannot be read or is invalid
  3  no PCR mismatches, but at least one requested PCR is unverifiable";

/// Options of `eventlog`.
#[derive(Debug, Args)]
#[command(after_long_help = AFTER_HELP)]
pub struct EventlogArgs {
    /// Event log to replay, as saved from
    /// /sys/kernel/security/tpm0/binary_bios_measurements.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Print the result as JSON instead of tables.
    #[arg(long)]
    pub json: bool,

    /// JSON file with PCR values read from the TPM, to compare with the replay. --help shows
    /// its format.
    #[arg(long, value_name = "FILE")]
    pub pcrs: Option<PathBuf>,
}

/// The overall result of a run, which sets the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `--pcrs` was not given, so only the replay was printed.
    NotCompared,
    /// Every compared PCR matches.
    Match,
    /// At least one compared PCR does not match.
    Mismatch,
    /// No compared PCR mismatches, but at least one is unverifiable.
    Unverifiable,
}

impl Verdict {
    /// Combines per-PCR results. A mismatch outranks an unverifiable PCR, because it shows that
    /// the log and the TPM disagree.
    pub fn of(comparisons: &[PcrComparison]) -> Self {
        let outcomes = || comparisons.iter().map(|comparison| &comparison.outcome);
        if outcomes().any(|outcome| matches!(outcome, Outcome::Mismatch { .. })) {
            Self::Mismatch
        } else if outcomes().any(|outcome| matches!(outcome, Outcome::Unverifiable(_))) {
            Self::Unverifiable
        } else {
            Self::Match
        }
    }

    /// Returns the exit status that `--help` documents.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::NotCompared | Self::Match => EXIT_MATCH,
            Self::Mismatch => EXIT_MISMATCH,
            Self::Unverifiable => EXIT_UNVERIFIABLE,
        }
    }

    fn name(self) -> Option<&'static str> {
        match self {
            Self::NotCompared => None,
            Self::Match => Some("match"),
            Self::Mismatch => Some("mismatch"),
            Self::Unverifiable => Some("unverifiable"),
        }
    }
}

/// Runs the command and returns the exit status.
pub fn run(args: &EventlogArgs) -> ExitCode {
    let status = run_with(
        args,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(status)
}

/// Runs the command with the given output streams and returns the exit status.
pub fn run_with(args: &EventlogArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> u8 {
    match execute(args, stdout) {
        Ok(verdict) => verdict.exit_code(),
        Err(error) => {
            // Nothing is left to report to if stderr itself fails.
            let _ = writeln!(stderr, "appliance-agent: error: {error:#}");
            EXIT_INVALID_INPUT
        }
    }
}

/// Replays the log, compares it with `--pcrs` when given, and writes the report.
pub fn execute(args: &EventlogArgs, out: &mut dyn Write) -> anyhow::Result<Verdict> {
    let path = args.file.display();
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("failed to read the event log {path}"))?;
    let log = EventLog::parse(&bytes).with_context(|| format!("invalid event log {path}"))?;
    let recorded = match &args.pcrs {
        Some(pcrs_path) => Some(load_recorded_pcrs(pcrs_path)?),
        None => None,
    };

    let replay = log.replay();
    let comparisons = recorded.map(|recorded| compare(&log, &replay, &recorded));
    let verdict = comparisons
        .as_deref()
        .map_or(Verdict::NotCompared, Verdict::of);

    let report = if args.json {
        let report = json_report(&log, &replay, comparisons.as_deref(), verdict);
        serde_json::to_string_pretty(&report).context("failed to encode the report as JSON")?
    } else {
        text_report(&args.file, &log, &replay, comparisons.as_deref(), verdict)
    };
    writeln!(out, "{report}").context("failed to write the report to stdout")?;
    Ok(verdict)
}

/// Reads a `--pcrs` file, see [`AFTER_HELP`] for the format. Returns the values sorted by
/// bank and PCR.
pub fn load_recorded_pcrs(path: &Path) -> anyhow::Result<Vec<RecordedPcr>> {
    let display_path = path.display();
    let text =
        std::fs::read(path).with_context(|| format!("failed to read --pcrs {display_path}"))?;
    let banks: BTreeMap<String, BTreeMap<String, String>> = serde_json::from_slice(&text)
        .with_context(|| {
            format!(
                "invalid --pcrs file {display_path}: expected a JSON object of banks and PCR values, \
                 such as {{\"sha256\": {{\"11\": \"<64 hex digits>\"}}}}"
            )
        })?;

    let mut recorded = Vec::new();
    for (bank, values) in &banks {
        let Some(algorithm) = HashAlgorithm::from_name(bank) else {
            bail!(
                "invalid --pcrs file {display_path}: unknown bank {bank:?}, expected sha1, sha256, \
                 sha384, sha512 or sm3_256"
            );
        };
        let digest_len = algorithm.standard_digest_len().unwrap_or_default();
        for (pcr, value) in values {
            let Some(index) = pcr.parse::<u32>().ok().filter(|index| *index <= MAX_PCR) else {
                bail!(
                    "invalid --pcrs file {display_path}: {pcr:?} in bank {bank} is not a PCR number \
                     from 0 to {MAX_PCR}"
                );
            };
            let Some(bytes) = decode_hex(value) else {
                bail!(
                    "invalid --pcrs file {display_path}: the {bank} value of PCR {index} is not \
                     hexadecimal: {value:?}"
                );
            };
            if bytes.len() != digest_len {
                bail!(
                    "invalid --pcrs file {display_path}: the {bank} value of PCR {index} has {} hex \
                     digits, but {bank} values have {}",
                    bytes.len() * 2,
                    digest_len * 2
                );
            }
            recorded.push(RecordedPcr {
                algorithm,
                pcr: PcrIndex::new(index),
                value: bytes,
            });
        }
    }
    if recorded.is_empty() {
        bail!(
            "--pcrs file {display_path} lists no PCR values; add at least one, such as \
             {{\"sha256\": {{\"11\": \"<64 hex digits>\"}}}}"
        );
    }
    recorded.sort_by_key(|entry| (entry.algorithm, entry.pcr));
    Ok(recorded)
}

/// Decodes hexadecimal digits in either case, after an optional 0x prefix.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    let values: Option<Vec<u32>> = digits.chars().map(|c| c.to_digit(16)).collect();
    let bytes = values?
        .chunks_exact(2)
        .map(|pair| u8::try_from(pair[0] * 16 + pair[1]).unwrap_or_default())
        .collect();
    Some(bytes)
}

/// The JSON report. PCR keys are numbers written as strings, in numeric order.
#[derive(Debug, Serialize)]
struct JsonReport {
    log_format: &'static str,
    /// Records in the log, including EV_NO_ACTION records such as the Spec ID event.
    records: usize,
    /// Algorithms whose digests the log carries.
    algorithms: Vec<String>,
    startup_locality: Option<u8>,
    trailing_zero_bytes: usize,
    /// Per bank, the replayed value of each PCR that the log extends.
    replay: BTreeMap<String, BTreeMap<u32, String>>,
    /// PCRs whose records lack a digest in some bank, so that bank has no value for them.
    incomplete: Vec<IncompletePcr>,
    /// Algorithms in the log that this program cannot compute.
    not_replayed: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comparison: Option<BTreeMap<String, BTreeMap<u32, ComparisonReport>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'static str>,
}

#[derive(Debug, Serialize)]
struct IncompletePcr {
    bank: &'static str,
    pcr: u32,
    records_without_digest: Vec<usize>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "result", rename_all = "lowercase")]
enum ComparisonReport {
    Match {
        value: String,
    },
    Mismatch {
        expected: String,
        actual: String,
        events: Vec<EventReport>,
    },
    Unverifiable {
        reason: String,
    },
}

#[derive(Debug, Serialize)]
struct EventReport {
    record: usize,
    offset: usize,
    #[serde(rename = "type")]
    event_type: String,
    digest: String,
    description: Option<String>,
}

fn json_report(
    log: &EventLog<'_>,
    replay: &Replay,
    comparisons: Option<&[PcrComparison]>,
    verdict: Verdict,
) -> JsonReport {
    let mut values = BTreeMap::new();
    let mut incomplete = Vec::new();
    for bank in &replay.banks {
        let bank_values: &mut BTreeMap<u32, String> =
            values.entry(bank.bank.name().to_owned()).or_default();
        for (pcr, replayed) in &bank.pcrs {
            if replayed.is_complete() {
                bank_values.insert(pcr.get(), replayed.to_hex());
            } else {
                incomplete.push(IncompletePcr {
                    bank: bank.bank.name(),
                    pcr: pcr.get(),
                    records_without_digest: replayed.missing_digests.clone(),
                });
            }
        }
    }

    let comparison = comparisons.map(|comparisons| {
        let mut banks: BTreeMap<String, BTreeMap<u32, ComparisonReport>> = BTreeMap::new();
        for comparison in comparisons {
            banks
                .entry(comparison.algorithm.to_string())
                .or_default()
                .insert(comparison.pcr.get(), comparison_report(&comparison.outcome));
        }
        banks
    });

    JsonReport {
        log_format: log.format().name(),
        records: log.records().len(),
        algorithms: log.algorithms().iter().map(ToString::to_string).collect(),
        startup_locality: log.startup_locality().map(|startup| startup.locality),
        trailing_zero_bytes: log.trailing_zero_bytes(),
        replay: values,
        incomplete,
        not_replayed: replay
            .skipped_algorithms
            .iter()
            .map(ToString::to_string)
            .collect(),
        comparison,
        result: verdict.name(),
    }
}

fn comparison_report(outcome: &Outcome) -> ComparisonReport {
    match outcome {
        Outcome::Match { value } => ComparisonReport::Match {
            value: to_hex(value),
        },
        Outcome::Mismatch {
            expected,
            actual,
            events,
        } => ComparisonReport::Mismatch {
            expected: to_hex(expected),
            actual: to_hex(actual),
            events: events
                .iter()
                .map(|event| EventReport {
                    record: event.record,
                    offset: event.offset,
                    event_type: event.event_type.to_string(),
                    digest: to_hex(&event.digest),
                    description: event.description.clone(),
                })
                .collect(),
        },
        Outcome::Unverifiable(reason) => ComparisonReport::Unverifiable {
            reason: reason.to_string(),
        },
    }
}

/// Formats the report for a person: a summary, the replayed values and the comparison.
fn text_report(
    path: &Path,
    log: &EventLog<'_>,
    replay: &Replay,
    comparisons: Option<&[PcrComparison]>,
    verdict: Verdict,
) -> String {
    let mut text = String::new();
    let algorithms: Vec<String> = log.algorithms().iter().map(ToString::to_string).collect();
    // fmt::Write for String returns Ok for every input.
    let _ = writeln!(text, "event log: {}", path.display());
    let _ = writeln!(
        text,
        "format: {}, {} records",
        log.format(),
        log.records().len()
    );
    let _ = writeln!(text, "digests: {}", algorithms.join(", "));
    if let Some(startup) = log.startup_locality() {
        let _ = writeln!(text, "startup locality: {}", startup.locality);
    }
    if log.trailing_zero_bytes() > 0 {
        let _ = writeln!(text, "zero padding: {} bytes", log.trailing_zero_bytes());
    }
    for algorithm in &replay.skipped_algorithms {
        let _ = writeln!(text, "not replayed: {algorithm} (no implementation here)");
    }

    let _ = write!(text, "\n{:<8} {:>3}  REPLAYED VALUE", "BANK", "PCR");
    for bank in &replay.banks {
        for (pcr, replayed) in &bank.pcrs {
            let value = if replayed.is_complete() {
                replayed.to_hex()
            } else {
                format!(
                    "incomplete: record(s) {} have no {} digest",
                    join_numbers(&replayed.missing_digests),
                    bank.bank
                )
            };
            let _ = write!(text, "\n{:<8} {pcr:>3}  {value}", bank.bank.name());
        }
    }

    if let Some(comparisons) = comparisons {
        let _ = write!(text, "\n\n{:<8} {:>3}  RESULT", "BANK", "PCR");
        for comparison in comparisons {
            write_comparison(&mut text, comparison);
        }
    }
    if let Some(name) = verdict.name() {
        let _ = write!(text, "\n\nresult: {name}");
    }
    text
}

fn write_comparison(text: &mut String, comparison: &PcrComparison) {
    let prefix = format!("\n{:<8} {:>3}  ", comparison.algorithm, comparison.pcr);
    let indent = " ".repeat(prefix.len() - 1);
    let _ = match &comparison.outcome {
        Outcome::Match { .. } => write!(text, "{prefix}match"),
        Outcome::Unverifiable(reason) => write!(text, "{prefix}unverifiable: {reason}"),
        Outcome::Mismatch {
            expected,
            actual,
            events,
        } => {
            let _ = write!(text, "{prefix}mismatch");
            let _ = write!(text, "\n{indent}  expected {}", to_hex(expected));
            let _ = write!(text, "\n{indent}  actual   {}", to_hex(actual));
            if events.is_empty() {
                let _ = write!(text, "\n{indent}  no record extends this PCR");
            }
            for event in events {
                let _ = write!(
                    text,
                    "\n{indent}  record {} at {:#x}  {}  {}",
                    event.record,
                    event.offset,
                    event.event_type,
                    to_hex(&event.digest)
                );
                if let Some(description) = &event.description {
                    let _ = write!(text, "  {description}");
                }
            }
            Ok(())
        }
    };
}

fn join_numbers(numbers: &[usize]) -> String {
    let texts: Vec<String> = numbers.iter().map(usize::to_string).collect();
    texts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    use clap::{CommandFactory, Parser};
    use serde_json::Value;

    use crate::cli::{Cli, Command};

    /// The SHA-1-only acceptance log that the secureboot crate's tests also use.
    const LEGACY_LOG: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../secureboot/tests/fixtures/b02-eventlog-sha1-legacy-format/binary_bios_measurements"
    );
    const LEGACY_PCR7_SHA1: &str = "3a73fc9d29ebdbc866f1ad32f75fbafc0cc48807";
    const LEGACY_PCR11_SHA1: &str = "95df8e41e76b3e273f25dd97c27a134a52be3c80";

    struct Run {
        status: u8,
        stdout: String,
        stderr: String,
    }

    fn run_command(file: &Path, json: bool, pcrs: Option<&Value>) -> Run {
        let directory = tempfile::tempdir().expect("temporary directory");
        let pcrs = pcrs.map(|value| {
            let path = directory.path().join("pcrs.json");
            std::fs::write(&path, value.to_string()).expect("write --pcrs file");
            path
        });
        let args = EventlogArgs {
            file: file.to_path_buf(),
            json,
            pcrs,
        };
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let status = run_with(&args, &mut stdout, &mut stderr);
        Run {
            status,
            stdout: String::from_utf8(stdout).expect("UTF-8 output"),
            stderr: String::from_utf8(stderr).expect("UTF-8 errors"),
        }
    }

    fn run_json(pcrs: Option<&Value>) -> (u8, Value) {
        let run = run_command(Path::new(LEGACY_LOG), true, pcrs);
        assert_eq!(run.stderr, "");
        let report = serde_json::from_str(&run.stdout).expect("JSON report");
        (run.status, report)
    }

    #[test]
    fn replay_only_json() {
        let (status, report) = run_json(None);

        assert_eq!(status, EXIT_MATCH);
        assert_eq!(report["log_format"], "tcg-1.2-sha1-only");
        assert_eq!(report["records"], 18);
        assert_eq!(report["algorithms"], serde_json::json!(["sha1"]));
        assert_eq!(report["replay"]["sha1"]["7"], LEGACY_PCR7_SHA1);
        assert_eq!(report["replay"]["sha1"]["11"], LEGACY_PCR11_SHA1);
        assert!(report.get("comparison").is_none());
        assert!(report.get("result").is_none());
    }

    #[test]
    fn sha256_against_sha1_log_unverifiable() {
        let pcrs = serde_json::json!({"sha256": {"11": "00".repeat(32)}});

        let (status, report) = run_json(Some(&pcrs));

        assert_eq!(status, EXIT_UNVERIFIABLE);
        let pcr11 = &report["comparison"]["sha256"]["11"];
        assert_eq!(pcr11["result"], "unverifiable");
        let reason = pcr11["reason"].as_str().expect("reason");
        assert!(reason.contains("no sha256 digests"), "{reason}");
        assert_eq!(report["result"], "unverifiable");
    }

    #[test]
    fn matching_values_exit_zero() {
        let pcrs = serde_json::json!({
            "sha1": {"7": LEGACY_PCR7_SHA1, "11": format!("0x{}", LEGACY_PCR11_SHA1.to_uppercase())}
        });

        let (status, report) = run_json(Some(&pcrs));

        assert_eq!(status, EXIT_MATCH);
        assert_eq!(report["comparison"]["sha1"]["7"]["result"], "match");
        assert_eq!(report["comparison"]["sha1"]["11"]["result"], "match");
        assert_eq!(report["result"], "match");
    }

    #[test]
    fn mismatch_lists_events() {
        let pcrs = serde_json::json!({"sha1": {"11": "ab".repeat(20)}});

        let (status, report) = run_json(Some(&pcrs));

        assert_eq!(status, EXIT_MISMATCH);
        let pcr11 = &report["comparison"]["sha1"]["11"];
        assert_eq!(pcr11["result"], "mismatch");
        assert_eq!(pcr11["expected"], "ab".repeat(20));
        assert_eq!(pcr11["actual"], LEGACY_PCR11_SHA1);
        let events = pcr11["events"].as_array().expect("events");
        assert_eq!(events.len(), 6);
        assert_eq!(events[0]["record"], 12);
        assert_eq!(events[0]["offset"], 0x225);
        assert_eq!(events[0]["type"], "EV_IPL");
        assert_eq!(events[0]["description"], ".linux");
        assert_eq!(events[0]["digest"].as_str().map(str::len), Some(40));
    }

    #[test]
    fn mismatch_outranks_unverifiable() {
        let pcrs = serde_json::json!({
            "sha1": {"11": "ab".repeat(20)},
            "sha256": {"11": "00".repeat(32)}
        });

        let (status, report) = run_json(Some(&pcrs));

        assert_eq!(status, EXIT_MISMATCH);
        assert_eq!(report["result"], "mismatch");
    }

    #[test]
    fn text_report_tables() {
        let pcrs = serde_json::json!({
            "sha1": {"7": LEGACY_PCR7_SHA1, "11": "ab".repeat(20)},
            "sha256": {"11": "00".repeat(32)}
        });

        let run = run_command(Path::new(LEGACY_LOG), false, Some(&pcrs));

        assert_eq!(run.status, EXIT_MISMATCH);
        let stdout = run.stdout;
        assert!(
            stdout.contains("format: tcg-1.2-sha1-only, 18 records"),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("sha1      11  {LEGACY_PCR11_SHA1}")),
            "{stdout}"
        );
        assert!(stdout.contains("sha1       7  match"), "{stdout}");
        assert!(stdout.contains("sha1      11  mismatch"), "{stdout}");
        assert!(stdout.contains("record 12 at 0x225  EV_IPL"), "{stdout}");
        assert!(stdout.contains("sha256    11  unverifiable: "), "{stdout}");
        assert!(stdout.ends_with("result: mismatch\n"), "{stdout}");
    }

    #[test]
    fn invalid_log_exit_two() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let empty = directory.path().join("empty.bin");
        std::fs::write(&empty, b"").expect("write log");

        let run = run_command(&empty, true, None);

        assert_eq!(run.status, EXIT_INVALID_INPUT);
        assert_eq!(run.stdout, "");
        assert!(run.stderr.contains("invalid event log"), "{}", run.stderr);
        assert!(
            run.stderr.contains("the event log is empty"),
            "{}",
            run.stderr
        );
    }

    #[test]
    fn missing_log_exit_two() {
        let run = run_command(Path::new("/nonexistent/eventlog.bin"), false, None);

        assert_eq!(run.status, EXIT_INVALID_INPUT);
        assert!(
            run.stderr.contains("failed to read the event log"),
            "{}",
            run.stderr
        );
    }

    #[test]
    fn invalid_pcrs_exit_two() {
        let cases = [
            (
                serde_json::json!({"md5": {"0": "00"}}),
                "unknown bank \"md5\"",
            ),
            (
                serde_json::json!({"sha1": {"24": "00".repeat(20)}}),
                "not a PCR number",
            ),
            (
                serde_json::json!({"sha1": {"x": "00".repeat(20)}}),
                "not a PCR number",
            ),
            (
                serde_json::json!({"sha1": {"0": "zz".repeat(20)}}),
                "not hexadecimal",
            ),
            (
                serde_json::json!({"sha1": {"0": "+1".repeat(20)}}),
                "not hexadecimal",
            ),
            (
                serde_json::json!({"sha1": {"0": "00".repeat(32)}}),
                "has 64 hex digits, but sha1 values have 40",
            ),
            (
                serde_json::json!({"sha1": {"0": 5}}),
                "expected a JSON object",
            ),
            (serde_json::json!([1, 2]), "expected a JSON object"),
            (serde_json::json!({}), "lists no PCR values"),
        ];
        for (pcrs, message) in cases {
            let run = run_command(Path::new(LEGACY_LOG), true, Some(&pcrs));

            assert_eq!(run.status, EXIT_INVALID_INPUT, "{pcrs}");
            assert_eq!(run.stdout, "", "{pcrs}");
            assert!(run.stderr.contains(message), "{pcrs}: {}", run.stderr);
        }
    }

    #[test]
    fn hex_decoding() {
        assert_eq!(decode_hex("0a0B"), Some(vec![0x0a, 0x0b]));
        assert_eq!(decode_hex("0XFF"), Some(vec![0xff]));
        assert_eq!(decode_hex(""), Some(vec![]));
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("é0"), None);
    }

    #[test]
    fn command_line_parses() {
        let cli = Cli::try_parse_from([
            "appliance-agent",
            "eventlog",
            "log.bin",
            "--json",
            "--pcrs",
            "pcrs.json",
        ])
        .expect("valid command line");

        let Command::Eventlog(args) = cli.command else {
            panic!("expected the eventlog command");
        };
        assert_eq!(args.file, PathBuf::from("log.bin"));
        assert!(args.json);
        assert_eq!(args.pcrs, Some(PathBuf::from("pcrs.json")));
    }

    #[test]
    fn help_documents_exit_codes() {
        let mut command = Cli::command();
        let subcommand = command
            .find_subcommand_mut("eventlog")
            .expect("eventlog subcommand");

        let help = subcommand.render_long_help().to_string();

        assert!(help.contains("Exit status:"), "{help}");
        assert!(help.contains("3  no PCR mismatches"), "{help}");
        assert!(help.contains("{\"sha256\": {\"0\""), "{help}");
    }
}
