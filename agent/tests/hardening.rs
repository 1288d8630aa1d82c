//! Clipboard agents and host channels over fake roots. The check runs
//! against a copied fixture tree with a recording stand-in for systemd and
//! signals. Then the harness plays what would bring an agent back (a client
//! on a listening socket, a respawning parent, a new login) and checks that
//! none comes back.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use appliance_agent::hardening::control::{HostControl, UnitInfo};
use appliance_agent::hardening::processes::{self, Process};
use appliance_agent::hardening::{self, autostart, Report, Target};
use appliance_agent::rootfs::{FsOverrides, RootFs};
use serde::Deserialize;
use serde_json::Value;

use support::fixture;

/// A unit as `units.json` describes it, in `systemctl show` field names.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FakeUnit {
    active_state: String,
    #[serde(default)]
    sub_state: String,
    #[serde(rename = "MainPID", default)]
    main_pid: u32,
    unit_file_state: String,
    #[serde(default)]
    triggers: Option<String>,
}

/// Stand-in for systemd and signals: units live in a map, and ending a
/// process removes its `/proc/PID` folder from the fake root.
struct FakeHost {
    root: PathBuf,
    units: BTreeMap<String, FakeUnit>,
    actions: Vec<String>,
}

impl FakeHost {
    fn new(root: &Path, units: BTreeMap<String, FakeUnit>) -> Self {
        Self {
            root: root.to_path_buf(),
            units,
            actions: Vec::new(),
        }
    }

    fn remove_process(&self, pid: u32) {
        let path = self.root.join(format!("proc/{pid}"));
        if path.exists() {
            fs::remove_dir_all(path).expect("remove fake process");
        }
    }
}

impl HostControl for FakeHost {
    fn unit(&mut self, name: &str) -> Result<Option<UnitInfo>, String> {
        Ok(self.units.get(name).map(|unit| UnitInfo {
            active_state: unit.active_state.clone(),
            unit_file_state: unit.unit_file_state.clone(),
        }))
    }

    fn stop_and_mask(&mut self, name: &str) -> Result<(), String> {
        self.actions.push(format!("stop and mask {name}"));
        let unit = self
            .units
            .get_mut(name)
            .ok_or_else(|| format!("no unit {name}"))?;
        unit.active_state = "inactive".to_owned();
        unit.sub_state = "dead".to_owned();
        unit.unit_file_state = "masked".to_owned();
        let main_pid = std::mem::take(&mut unit.main_pid);
        if main_pid != 0 {
            self.remove_process(main_pid);
        }
        Ok(())
    }

    fn terminate(&mut self, process: &Process) -> Result<(), String> {
        self.actions.push(format!("terminate pid {}", process.pid));
        self.remove_process(process.pid);
        Ok(())
    }
}

/// Copies a fixture's root into a temporary folder, because the check
/// writes autostart entries.
fn copy_root(source: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("create temp dir");
    copy_tree(&source.join("root"), dir.path());
    give_homes_to_users(dir.path());
    dir
}

/// Makes the fake root traversable and each home owned by its user, as on
/// a real system, because the check writes into homes as their owner.
fn give_homes_to_users(root: &Path) {
    fs::set_permissions(root, fs::Permissions::from_mode(0o755)).expect("chmod root");
    for user in autostart::users(&view(root)) {
        chown_tree(
            &root.join(user.home.trim_start_matches('/')),
            user.uid,
            user.gid,
        );
    }
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).expect("chown");
    if path.is_dir() && !path.is_symlink() {
        for entry in fs::read_dir(path).expect("list folder") {
            chown_tree(&entry.expect("entry").path(), uid, gid);
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create folder");
    for entry in fs::read_dir(from).expect("list fixture") {
        let entry = entry.expect("fixture entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy fixture file");
        }
    }
}

fn view(root: &Path) -> RootFs {
    RootFs::new(root.to_path_buf(), FsOverrides::default())
}

fn run_check(root: &Path, host: &mut FakeHost) -> Report {
    let fs = view(root);
    hardening::check(
        &Target {
            proc_fs: &fs,
            files_fs: &fs,
        },
        host,
    )
}

/// Writes a fake process under `root/proc/PID`.
fn add_process(root: &Path, pid: u32, parent_pid: u32, uid: u32, name: &str, arguments: &[&str]) {
    let dir = root.join(format!("proc/{pid}"));
    fs::create_dir_all(&dir).expect("create proc folder");
    fs::write(dir.join("comm"), format!("{name}\n")).expect("write comm");
    fs::write(
        dir.join("status"),
        format!(
            "Name:\t{name}\nPid:\t{pid}\nPPid:\t{parent_pid}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n"
        ),
    )
    .expect("write status");
    let mut cmdline = arguments.join("\0");
    cmdline.push('\0');
    fs::write(dir.join("cmdline"), cmdline).expect("write cmdline");
}

fn process_names(root: &Path) -> Vec<String> {
    processes::list(&view(root))
        .into_iter()
        .map(|process| process.name)
        .collect()
}

/// Plays what brings agents back after the check, in the case's order: a
/// client connecting to every socket still listening, a respawning parent
/// re-creating its child, and a fresh login of every user.
fn simulate_comeback(root: &Path, host: &FakeHost, respawning_parents: &[(u32, &str, &[&str])]) {
    let mut next_pid = 5000;
    for unit in host.units.values() {
        if unit.active_state == "active" && unit.sub_state == "listening" {
            if let Some(service) = &unit.triggers {
                let daemon = service.trim_end_matches(".service");
                add_process(
                    root,
                    next_pid,
                    1,
                    0,
                    daemon,
                    &[&format!("/usr/sbin/{daemon}")],
                );
                next_pid += 1;
            }
        }
    }
    for (parent_pid, child_name, child_arguments) in respawning_parents {
        if root.join(format!("proc/{parent_pid}")).exists() {
            add_process(root, next_pid, *parent_pid, 0, child_name, child_arguments);
            next_pid += 1;
        }
    }
    let fs = view(root);
    for user in autostart::users(&fs) {
        let mut entries: BTreeMap<String, String> = BTreeMap::new();
        for folder in [
            autostart::SYSTEM_AUTOSTART.to_owned(),
            format!("{}/.config/autostart", user.home),
        ] {
            for name in fs.read_dir(&folder).unwrap_or_default() {
                if let Ok(text) = fs.read_to_string(&format!("{folder}/{name}")) {
                    // The user's folder comes second and wins.
                    entries.insert(name, text);
                }
            }
        }
        for text in entries.values() {
            if autostart::is_hidden(text) {
                continue;
            }
            let Some(exec) = text.lines().find_map(|line| line.strip_prefix("Exec=")) else {
                continue;
            };
            let program = exec.split_whitespace().next().unwrap_or(exec);
            let name = program.rsplit('/').next().unwrap_or(program);
            add_process(root, next_pid, 1, user.uid, name, &[program]);
            next_pid += 1;
        }
    }
}

fn load_units(case: &Path) -> BTreeMap<String, FakeUnit> {
    let text = fs::read_to_string(case.join("units.json")).expect("read units.json");
    serde_json::from_str(&text).expect("valid units.json")
}

fn load_expected(case: &Path) -> Value {
    let text = fs::read_to_string(case.join("expected.json")).expect("read expected.json");
    serde_json::from_str::<Value>(&text).expect("valid expected.json")["expected"].clone()
}

#[test]
fn spice_socket_activation_case() {
    let case = fixture("cases/e01-spice-vdagent-socket-activation");
    let expected = load_expected(&case);
    let root = copy_root(&case);
    let mut host = FakeHost::new(root.path(), load_units(&case));

    let report = run_check(root.path(), &mut host);

    let mut found: Vec<(u64, String)> = report
        .clipboard_agents
        .iter()
        .map(|finding| (u64::from(finding.pid.expect("pid")), finding.what.clone()))
        .collect();
    found.sort();
    let mut wanted: Vec<(u64, String)> = expected["clipboard_agents"]
        .as_array()
        .expect("list")
        .iter()
        .map(|entry| {
            (
                entry["pid"].as_u64().expect("pid"),
                entry["what"].as_str().expect("what").to_owned(),
            )
        })
        .collect();
    wanted.sort();
    assert_eq!(found, wanted);

    for pid in expected["not_clipboard_agents"].as_array().expect("list") {
        let pid = u32::try_from(pid.as_u64().expect("pid")).expect("pid fits u32");
        assert!(
            report
                .clipboard_agents
                .iter()
                .all(|finding| finding.pid != Some(pid)),
            "pid {pid} is not a clipboard agent"
        );
        assert!(
            !host.actions.contains(&format!("terminate pid {pid}")),
            "pid {pid} must not be ended"
        );
    }
    for action in [
        "stop and mask spice-vdagentd.socket",
        "stop and mask spice-vdagentd.service",
        "terminate pid 2101",
    ] {
        assert!(
            host.actions.iter().any(|done| done == action),
            "{action}: {:?}",
            host.actions
        );
    }
    let socket_first = host
        .actions
        .iter()
        .position(|done| done == "stop and mask spice-vdagentd.socket");
    let service_next = host
        .actions
        .iter()
        .position(|done| done == "stop and mask spice-vdagentd.service");
    assert!(socket_first < service_next, "{:?}", host.actions);
    assert!(report.actions.iter().any(|action| action.ok
        && action.action == "set Hidden=true in /etc/xdg/autostart/spice-vdagent.desktop"));
    assert!(report
        .host_channels
        .iter()
        .any(|finding| finding.agent == "qemu-guest-agent" && finding.pid == Some(640)));

    simulate_comeback(root.path(), &host, &[]);

    let names = process_names(root.path());
    for name in expected["postconditions"]["no_process_named"]
        .as_array()
        .expect("list")
    {
        let name = name.as_str().expect("name");
        assert!(
            !names.iter().any(|running| running == name),
            "{name} is back: {names:?}"
        );
    }
    assert!(
        names.iter().any(|running| running == "qemu-ga"),
        "qemu-ga must keep running"
    );
    let socket = &host.units["spice-vdagentd.socket"];
    assert_ne!(socket.sub_state, "listening");
    let user_entry = root
        .path()
        .join("home/alice/.config/autostart/spice-vdagent.desktop");
    assert!(autostart::is_hidden(
        &fs::read_to_string(user_entry).expect("user entry")
    ));
}

#[test]
fn stopping_only_service_comes_back() {
    // The harness itself must catch the failure the case warns about: with
    // the service stopped and the socket left listening, the daemon returns.
    let case = fixture("cases/e01-spice-vdagent-socket-activation");
    let root = copy_root(&case);
    let mut host = FakeHost::new(root.path(), load_units(&case));

    host.stop_and_mask("spice-vdagentd.service").expect("stop");
    simulate_comeback(root.path(), &host, &[]);

    assert!(process_names(root.path())
        .iter()
        .any(|name| name == "spice-vdagentd"));
}

#[test]
fn second_check_finds_nothing_to_do() {
    let case = fixture("cases/e01-spice-vdagent-socket-activation");
    let root = copy_root(&case);
    let mut host = FakeHost::new(root.path(), load_units(&case));
    run_check(root.path(), &mut host);
    host.actions.clear();

    let again = run_check(root.path(), &mut host);

    assert!(host.actions.is_empty(), "{:?}", host.actions);
    assert!(again.actions.is_empty(), "{:?}", again.actions);
    assert!(
        again.clipboard_agents.is_empty(),
        "{:?}",
        again.clipboard_agents
    );
}

/// Creates a fake root with `/etc/passwd` (user alice, uid 1000) and no
/// processes.
fn empty_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("create temp dir");
    fs::create_dir_all(dir.path().join("etc")).expect("create etc");
    fs::create_dir_all(dir.path().join("proc")).expect("create proc");
    fs::create_dir_all(dir.path().join("home/alice")).expect("create home");
    fs::write(
        dir.path().join("etc/passwd"),
        "root:x:0:0::/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n",
    )
    .expect("write passwd");
    give_homes_to_users(dir.path());
    dir
}

fn write_autostart(root: &Path, name: &str, exec: &str) {
    let folder = root.join("etc/xdg/autostart");
    fs::create_dir_all(&folder).expect("create autostart folder");
    fs::write(
        folder.join(name),
        format!("[Desktop Entry]\nType=Application\nName={name}\nExec={exec}\n"),
    )
    .expect("write autostart entry");
}

#[test]
fn vmware_user_agent_disabled() {
    let root = empty_root();
    add_process(root.path(), 900, 1, 0, "vmtoolsd", &["/usr/bin/vmtoolsd"]);
    add_process(
        root.path(),
        1500,
        1400,
        1000,
        "vmtoolsd",
        &["/usr/bin/vmtoolsd", "-n", "vmusr"],
    );
    add_process(
        root.path(),
        1490,
        1400,
        1000,
        "vmware-user-sui",
        &["/usr/bin/vmware-user-suid-wrapper"],
    );
    write_autostart(
        root.path(),
        "vmware-user.desktop",
        "/usr/bin/vmware-user-suid-wrapper",
    );
    let mut host = FakeHost::new(root.path(), BTreeMap::new());

    let report = run_check(root.path(), &mut host);

    let clipboard: Vec<u32> = report
        .clipboard_agents
        .iter()
        .filter_map(|f| f.pid)
        .collect();
    assert!(clipboard.contains(&1500), "{clipboard:?}");
    assert!(clipboard.contains(&1490), "{clipboard:?}");
    assert!(
        !clipboard.contains(&900),
        "the system vmtoolsd is not a clipboard agent"
    );
    assert!(report
        .host_channels
        .iter()
        .any(|finding| finding.agent == "vmtoolsd" && finding.pid == Some(900)));
    assert!(host.actions.contains(&"terminate pid 1500".to_owned()));
    assert!(!host.actions.contains(&"terminate pid 900".to_owned()));
    simulate_comeback(root.path(), &host, &[]);
    let running = processes::list(&view(root.path()));
    assert!(
        running
            .iter()
            .all(|process| process.pid == 900 || process.uid != 1000),
        "{running:?}"
    );
}

#[test]
fn vboxclient_parent_ended_first() {
    let root = empty_root();
    add_process(
        root.path(),
        2000,
        1,
        1000,
        "VBoxClient",
        &["/usr/bin/VBoxClient", "--clipboard"],
    );
    add_process(
        root.path(),
        2001,
        2000,
        1000,
        "VBoxClient",
        &["/usr/bin/VBoxClient", "--clipboard"],
    );
    add_process(
        root.path(),
        2100,
        1,
        1000,
        "VBoxClient",
        &["/usr/bin/VBoxClient", "--draganddrop"],
    );
    add_process(
        root.path(),
        700,
        1,
        0,
        "VBoxService",
        &["/usr/sbin/VBoxService"],
    );
    write_autostart(root.path(), "vboxclient.desktop", "/usr/bin/VBoxClient-all");
    let mut host = FakeHost::new(root.path(), BTreeMap::new());

    let report = run_check(root.path(), &mut host);

    assert_eq!(host.actions, ["terminate pid 2000", "terminate pid 2001"]);
    assert!(report
        .host_channels
        .iter()
        .any(|finding| finding.agent == "vboxservice" && finding.pid == Some(700)));
    simulate_comeback(
        root.path(),
        &host,
        &[(2000, "VBoxClient", &["/usr/bin/VBoxClient", "--clipboard"])],
    );
    let names: Vec<(String, Vec<String>)> = processes::list(&view(root.path()))
        .into_iter()
        .map(|process| (process.name, process.arguments))
        .collect();
    assert!(
        !names.iter().any(|(name, arguments)| name == "VBoxClient"
            && arguments.iter().any(|a| a == "--clipboard")),
        "{names:?}"
    );
}

#[test]
fn hyperv_daemons_reported() {
    let root = empty_root();
    add_process(
        root.path(),
        300,
        1,
        0,
        "hv_kvp_daemon",
        &["/usr/sbin/hv_kvp_daemon", "-n"],
    );
    add_process(
        root.path(),
        301,
        1,
        0,
        "hv_fcopy_uio_da",
        &["/usr/sbin/hv_fcopy_uio_daemon"],
    );
    let mut units = BTreeMap::new();
    units.insert(
        "hv-fcopy-daemon.service".to_owned(),
        FakeUnit {
            active_state: "inactive".to_owned(),
            sub_state: "dead".to_owned(),
            main_pid: 0,
            unit_file_state: "enabled".to_owned(),
            triggers: None,
        },
    );
    let mut host = FakeHost::new(root.path(), units);

    let report = run_check(root.path(), &mut host);

    let agents: Vec<&str> = report
        .host_channels
        .iter()
        .map(|f| f.agent.as_str())
        .collect();
    assert!(agents.contains(&"hv-kvp-daemon"), "{agents:?}");
    assert!(agents.contains(&"hv-fcopy-uio-daemon"), "{agents:?}");
    assert!(
        agents.contains(&"hv-fcopy-daemon"),
        "the enabled unit is reported: {agents:?}"
    );
    assert!(host.actions.is_empty(), "host channels are only reported");
    assert!(report.clipboard_agents.is_empty());
}

#[test]
fn shared_folders_from_mounts() {
    let root = empty_root();
    fs::write(
        root.path().join("proc/mounts"),
        "/dev/vda2 / ext4 rw 0 0\n\
         hostshare /mnt/host\\040files 9p rw,trans=virtio 0 0\n\
         data /srv/data virtiofs rw 0 0\n\
         vboxshare /media/sf_share vboxsf rw 0 0\n\
         .host:/ /mnt/hgfs fuse.vmhgfs-fuse rw 0 0\n\
         tmpfs /run tmpfs rw 0 0\n",
    )
    .expect("write mounts");

    let folders = hardening::shared_folders(&view(root.path()));

    let summary: Vec<(&str, &str)> = folders
        .iter()
        .map(|folder| (folder.mount_point.as_str(), folder.fs_type.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("/mnt/host files", "9p"),
            ("/srv/data", "virtiofs"),
            ("/media/sf_share", "vboxsf"),
            ("/mnt/hgfs", "fuse.vmhgfs-fuse"),
        ]
    );
    assert_eq!(folders[0].source, "hostshare");
}

#[test]
fn installed_but_stopped_agent_masked() {
    let root = empty_root();
    let mut units = BTreeMap::new();
    for name in ["spice-vdagentd.socket", "spice-vdagentd.service"] {
        units.insert(
            name.to_owned(),
            FakeUnit {
                active_state: "inactive".to_owned(),
                sub_state: "dead".to_owned(),
                main_pid: 0,
                unit_file_state: "enabled".to_owned(),
                triggers: None,
            },
        );
    }
    let mut host = FakeHost::new(root.path(), units);

    let report = run_check(root.path(), &mut host);

    assert_eq!(
        host.actions,
        [
            "stop and mask spice-vdagentd.socket",
            "stop and mask spice-vdagentd.service"
        ]
    );
    let sources: Vec<&str> = report
        .clipboard_agents
        .iter()
        .filter_map(|finding| finding.source.as_deref())
        .collect();
    assert_eq!(sources, ["spice-vdagentd.socket", "spice-vdagentd.service"]);
}

#[test]
fn planted_symlink_not_followed() {
    let root = empty_root();
    write_autostart(
        root.path(),
        "spice-vdagent.desktop",
        "/usr/bin/spice-vdagent",
    );
    // A folder only root may write, which the user points their autostart
    // folder at.
    let protected = root.path().join("etc/cron.d");
    fs::create_dir_all(&protected).expect("create protected folder");
    fs::set_permissions(&protected, fs::Permissions::from_mode(0o755)).expect("chmod");
    let config = root.path().join("home/alice/.config");
    fs::create_dir_all(&config).expect("create .config");
    chown_tree(&config, 1000, 1000);
    std::os::unix::fs::symlink(&protected, config.join("autostart")).expect("plant link");
    std::os::unix::fs::lchown(config.join("autostart"), Some(1000), Some(1000))
        .expect("chown link");
    let mut host = FakeHost::new(root.path(), BTreeMap::new());

    let report = run_check(root.path(), &mut host);

    let entries: Vec<_> = fs::read_dir(&protected).expect("list").collect();
    assert!(
        entries.is_empty(),
        "a file was written through the link: {entries:?}"
    );
    assert!(
        report
            .actions
            .iter()
            .any(|action| !action.ok && action.action.contains("spice-vdagent.desktop")),
        "{:?}",
        report.actions
    );
    let system = fs::read_to_string(root.path().join("etc/xdg/autostart/spice-vdagent.desktop"))
        .expect("system entry");
    assert!(
        autostart::is_hidden(&system),
        "the system entry is still hidden"
    );
}
