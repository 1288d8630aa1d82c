//! `serve` against real processes named like clipboard agents, inside a
//! PID namespace of its own so that it can list, and end, only the
//! processes this test starts.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use appliance_agent::platform::{self, PlatformState, FORMAT_VERSION};

use support::{detect_fixture, fixture};

/// Script that plays VBoxClient: run with `--clipboard`, it
/// restarts a child copy of itself whenever that child ends, as VBoxClient's
/// parent process does.
const VBOXCLIENT: &str = r#"#!/bin/sh
if [ -z "$VBOXCLIENT_CHILD" ]; then
    while :; do
        VBOXCLIENT_CHILD=1 "$0" "$@" &
        wait $!
        sleep 0.2
    done
fi
while :; do sleep 1; done
"#;

/// Runs inside the namespace as its PID 1: starts the agents, starts
/// `serve` with a one-second check, starts the session agent again after
/// the first check as a new login would, then lists what still runs.
const SCENARIO: &str = r#"#!/bin/sh
cd "$WORK"
./spice-vdagent 300 &
./VBoxClient --clipboard &
sleep 1
"$AGENT" serve --config "$WORK/appliance.yaml" --state-dir "$WORK/state" \
    --console "$WORK/console" --host-channel-check-seconds 1 2> serve.log &
serve=$!
sleep 3
./spice-vdagent 300 &
sleep 4
for status in /proc/[0-9]*/status; do
    state=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "$status" 2>/dev/null)
    [ "$state" = Z ] && continue
    sed -n 's/^Name:[[:space:]]*//p' "$status" 2>/dev/null
done > running.txt
kill "$serve"
wait "$serve"
"#;

fn write_executable(path: &Path, text: &str) {
    fs::write(path, text).expect("write script");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod script");
}

fn can_unshare() -> bool {
    Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .status()
        .is_ok_and(|status| status.success())
}

#[test]
fn agents_stay_gone_under_serve() {
    // NOTE: needs root (or user namespaces) for unshare; CI runs as root.
    assert!(
        can_unshare(),
        "unshare --pid --fork --mount-proc failed: this test needs root and util-linux"
    );
    let work = tempfile::tempdir().expect("create temp dir");
    let dir = work.path();
    fs::copy("/bin/sleep", dir.join("spice-vdagent")).expect("copy sleep");
    write_executable(&dir.join("VBoxClient"), VBOXCLIENT);
    write_executable(&dir.join("scenario.sh"), SCENARIO);
    fs::write(
        dir.join("appliance.yaml"),
        format!(
            "listen: [\"127.0.0.1:0\"]\nauth:\n  token_store: {}\n",
            dir.join("tokens.json").display()
        ),
    )
    .expect("write config");
    let state = PlatformState {
        format_version: FORMAT_VERSION,
        detected_at: 0,
        detection: detect_fixture(&fixture("vm/kvm-q35")),
    };
    platform::write(&dir.join("state"), &state).expect("write platform state");

    let status = Command::new("timeout")
        .arg("60")
        .args(["unshare", "--pid", "--fork", "--mount-proc"])
        .arg(dir.join("scenario.sh"))
        .env("WORK", dir)
        .env("AGENT", env!("CARGO_BIN_EXE_appliance-agent"))
        .env("RUST_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .status()
        .expect("run the scenario");

    let log = fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
    assert!(status.success(), "scenario failed: {status:?}\n{log}");
    let running = fs::read_to_string(dir.join("running.txt")).expect("read process list");
    let names: Vec<&str> = running.lines().collect();
    assert!(names.contains(&"appliance-agent"), "{names:?}");
    for agent in ["spice-vdagent", "VBoxClient"] {
        assert!(
            !names.contains(&agent),
            "{agent} still runs: {names:?}\n{log}"
        );
    }
    let terminated = log.matches("terminate pid").count();
    assert!(terminated >= 4, "expected at least 4 terminations:\n{log}");
    assert!(log.contains("host channel checks started"), "{log}");
}
