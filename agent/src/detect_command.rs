//! `detect`: runs detection once and prints the result.

use std::io::Write;

use anyhow::Context;

use crate::cli::DetectArgs;
use crate::collect;
use crate::detect::{self, Detection};

/// Runs detection, writes the bundle when asked, and prints the result.
pub fn run(args: &DetectArgs) -> anyhow::Result<()> {
    let mut fs = args.probe.root_fs()?;
    if args.collect.is_some() {
        fs = fs.with_recording();
    }
    let cpuid = args.probe.cpuid()?;
    let detection = detect::run(&fs, &cpuid);

    if let Some(dir) = &args.collect {
        collect::write_bundle(dir, &fs, &cpuid, &detection)?;
        let dir = dir.display();
        eprintln!(
            "support bundle written to {dir}. Replay it with: appliance-agent detect --json \
             --root {dir}/root --cpuid {dir}/cpuid.json --fs-overrides {dir}/fs_overrides.json"
        );
    }

    let text = if args.json {
        serde_json::to_string_pretty(&detection).context("failed to encode the result as JSON")?
    } else {
        summary(&detection)
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}").context("failed to write the result to stdout")?;
    Ok(())
}

/// Formats the result for a person: one fact per line.
pub fn summary(detection: &Detection) -> String {
    let gpu = &detection.gpu;
    let mut lines = vec![
        format!("virtualization: {}", detection.virtualization),
        format!("vm: {}", detection.vm),
        format!("container: {}", detection.container),
        format!("gpus: {}", list(&gpu.gpus)),
        format!("passthrough gpus: {}", list(&gpu.passthrough_gpus)),
        format!("usable gpus: {}", list(&gpu.usable_gpus)),
        format!("unbound gpus: {}", list(&gpu.unbound_gpus)),
        format!(
            "emulated display devices: {}",
            list(&gpu.emulated_display_devices)
        ),
    ];
    for error in &detection.read_errors {
        lines.push(format!("skipped {}: {}", error.path, error.error));
    }
    lines.join("\n")
}

fn list(addresses: &[String]) -> String {
    if addresses.is_empty() {
        "none".to_owned()
    } else {
        addresses.join(" ")
    }
}
