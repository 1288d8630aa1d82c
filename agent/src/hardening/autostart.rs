//! XDG autostart entries: a session agent such as spice-vdagent starts again
//! at every login through `/etc/xdg/autostart/NAME.desktop`.
//!
//! The XDG Autostart Specification (0.5) lets an entry with `Hidden=true`
//! disable the entry of the same name, and a user's
//! `~/.config/autostart/NAME.desktop` takes precedence over the system one.
//! The system entry therefore gets `Hidden=true`, which covers users created
//! later, and each existing user gets a hidden entry of their own, which
//! covers a user copy that would otherwise take precedence.

use std::fs;
use std::io;

use crate::atomic_file;
use crate::rootfs::RootFs;

/// Folder of the system-wide autostart entries.
pub const SYSTEM_AUTOSTART: &str = "/etc/xdg/autostart";

/// Folders of autostart entries for GDM's login screen, where the
/// spice-vdagent package (0.22 in Debian trixie) also installs its entry.
pub const LOGIN_SCREEN_AUTOSTART: [&str; 2] = [
    "/usr/share/gdm/autostart/LoginWindow",
    "/usr/share/gdm/greeter/autostart",
];

/// Returns the system-wide paths an entry named `name` may have.
fn system_paths(name: &str) -> Vec<String> {
    std::iter::once(SYSTEM_AUTOSTART)
        .chain(LOGIN_SCREEN_AUTOSTART)
        .map(|folder| format!("{folder}/{name}"))
        .collect()
}

/// A login account from `/etc/passwd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// Lowest uid of a regular account on Debian (`FIRST_UID` in adduser.conf).
const FIRST_USER_UID: u32 = 1000;

/// uid of `nobody`, which never logs in.
const NOBODY_UID: u32 = 65534;

/// Reads the accounts that can have a desktop session: regular uids whose
/// home directory exists.
pub fn users(fs: &RootFs) -> Vec<User> {
    let Ok(text) = fs.read_to_string("/etc/passwd") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 7 {
                return None;
            }
            Some(User {
                name: fields[0].to_owned(),
                uid: fields[2].parse().ok()?,
                gid: fields[3].parse().ok()?,
                home: fields[5].to_owned(),
            })
        })
        .filter(|user| user.uid >= FIRST_USER_UID && user.uid != NOBODY_UID)
        .filter(|user| user.home.starts_with('/') && fs.exists(&user.home).unwrap_or(false))
        .collect()
}

/// Returns the user with this uid.
pub fn user_by_uid(users: &[User], uid: u32) -> Option<&User> {
    users.iter().find(|user| user.uid == uid)
}

/// Returns true when an entry named `name` would start at login: a system
/// or login screen entry or a user entry exists and is not hidden.
pub fn is_active(fs: &RootFs, name: &str, users: &[User]) -> bool {
    let mut paths = system_paths(name);
    paths.extend(users.iter().map(|user| user_entry_path(user, name)));
    paths
        .iter()
        .any(|path| fs.read_to_string(path).is_ok_and(|text| !is_hidden(&text)))
}

/// Hides the entry `name` for everyone: each system and login screen entry
/// that exists gets `Hidden=true`, and each user gets a hidden entry.
/// Returns one line per file written, and the errors of the files that
/// failed.
pub fn hide(fs: &RootFs, name: &str, users: &[User]) -> Vec<Result<String, String>> {
    let mut results = Vec::new();
    for system_path in system_paths(name) {
        // Read through a symbolic link, such as the greeter's link to the
        // /etc/xdg entry, so an entry already hidden there is left alone.
        let Ok(text) = fs.read_to_string(&system_path) else {
            continue;
        };
        if is_hidden(&text) {
            continue;
        }
        let host_path = fs.host_path(&system_path);
        results.push(
            atomic_file::write(&host_path, with_hidden(&text).as_bytes(), 0o644)
                .map(|()| format!("set Hidden=true in {system_path}"))
                .map_err(|err| format!("failed to write {system_path}: {err}")),
        );
    }
    for user in users {
        let path = user_entry_path(user, name);
        let text = fs.read_to_string(&path).ok();
        if text.as_deref().is_some_and(is_hidden) {
            continue;
        }
        let contents = match &text {
            Some(text) => with_hidden(text),
            None => format!("[Desktop Entry]\nType=Application\nName={name}\nHidden=true\n"),
        };
        results.push(
            write_user_entry(fs, user, &path, &contents)
                .map(|()| format!("wrote a hidden {path} for user {}", user.name))
                .map_err(|err| format!("failed to write {path}: {err}")),
        );
    }
    results
}

fn user_entry_path(user: &User, name: &str) -> String {
    format!(
        "{}/.config/autostart/{name}",
        user.home.trim_end_matches('/')
    )
}

/// Writes a file in the user's home with the user's file system identity,
/// so the kernel checks every path component as it would for the user. A
/// home directory is the user's to change: as root, a symbolic link planted
/// at `~/.config/autostart` would redirect the write, and the chown that
/// follows, to any folder, such as `/etc/cron.d`.
fn write_user_entry(fs: &RootFs, user: &User, path: &str, contents: &str) -> io::Result<()> {
    let _identity = FsIdentity::switch_to(user.uid, user.gid)?;
    let home = user.home.trim_end_matches('/');
    for directory in [
        format!("{home}/.config"),
        format!("{home}/.config/autostart"),
    ] {
        let host_directory = fs.host_path(&directory);
        if !host_directory.is_dir() {
            fs::create_dir(&host_directory)?;
        }
    }
    atomic_file::write(&fs.host_path(path), contents.as_bytes(), 0o644)
}

/// The calling thread's file system uid and gid, switched to a user's until
/// dropped. Linux keeps them per thread, so other threads keep root's.
struct FsIdentity {
    uid: libc::uid_t,
    gid: libc::gid_t,
}

impl FsIdentity {
    fn switch_to(uid: u32, gid: u32) -> io::Result<Self> {
        // SAFETY: setfsgid and setfsuid change only this thread's file
        // system ids; they return the previous id and read no memory.
        let previous_gid = unsafe { libc::setfsgid(gid) };
        // SAFETY: as above.
        let previous_uid = unsafe { libc::setfsuid(uid) };
        let restore = Self {
            uid: libc::uid_t::try_from(previous_uid).unwrap_or(0),
            gid: libc::gid_t::try_from(previous_gid).unwrap_or(0),
        };
        // Neither call reports failure; calling again returns the id now in
        // effect.
        // SAFETY: as above.
        let (now_uid, now_gid) = unsafe { (libc::setfsuid(uid), libc::setfsgid(gid)) };
        if libc::uid_t::try_from(now_uid).ok() != Some(uid)
            || libc::gid_t::try_from(now_gid).ok() != Some(gid)
        {
            drop(restore);
            return Err(io::Error::other(format!(
                "failed to switch the file system identity to uid {uid}, gid {gid}"
            )));
        }
        Ok(restore)
    }
}

impl Drop for FsIdentity {
    fn drop(&mut self) {
        // SAFETY: restores this thread's previous file system ids, as in
        // switch_to.
        unsafe {
            libc::setfsuid(self.uid);
            libc::setfsgid(self.gid);
        }
    }
}

/// Returns true when the `[Desktop Entry]` group sets `Hidden=true`.
pub fn is_hidden(text: &str) -> bool {
    let mut in_entry = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_entry = line == "[Desktop Entry]";
        } else if in_entry && line.replace(' ', "") == "Hidden=true" {
            return true;
        }
    }
    false
}

/// Returns the entry with `Hidden=true` in its `[Desktop Entry]` group,
/// replacing another `Hidden=` value and keeping every other line.
pub fn with_hidden(text: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let start = lines
        .iter()
        .position(|line| line.trim() == "[Desktop Entry]");
    let Some(start) = start else {
        let mut result = String::from("[Desktop Entry]\nHidden=true\n");
        result.push_str(text);
        return result;
    };
    let end = lines[start + 1..]
        .iter()
        .position(|line| line.trim_start().starts_with('['))
        .map_or(lines.len(), |offset| start + 1 + offset);
    let existing = (start + 1..end).find(|&index| {
        lines[index]
            .split_once('=')
            .is_some_and(|(key, _)| key.trim() == "Hidden")
    });
    match existing {
        Some(index) => lines[index] = "Hidden=true".to_owned(),
        None => lines.insert(start + 1, "Hidden=true".to_owned()),
    }
    let mut result = lines.join("\n");
    result.push('\n');
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPICE_ENTRY: &str = "[Desktop Entry]\nType=Application\nName=Spice vdagent\nExec=/usr/bin/spice-vdagent\nTerminal=false\nNoDisplay=true\n";

    #[test]
    fn hidden_added_to_entry_group() {
        let edited = with_hidden(SPICE_ENTRY);

        assert!(edited.starts_with("[Desktop Entry]\nHidden=true\nType=Application\n"));
        assert!(is_hidden(&edited));
        assert!(!is_hidden(SPICE_ENTRY));
    }

    #[test]
    fn hidden_false_replaced() {
        let text = "[Desktop Entry]\nHidden=false\nExec=x\n[Desktop Action new]\nHidden=true\n";

        let edited = with_hidden(text);

        assert_eq!(
            edited,
            "[Desktop Entry]\nHidden=true\nExec=x\n[Desktop Action new]\nHidden=true\n"
        );
        assert!(
            !is_hidden(text),
            "a Hidden key of another group does not count"
        );
    }

    #[test]
    fn users_from_passwd() {
        let dir = tempfile::tempdir().expect("create temp dir");
        fs::create_dir_all(dir.path().join("etc")).expect("create etc");
        fs::create_dir_all(dir.path().join("home/alice")).expect("create home");
        fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\nbob:x:1001:1001::/home/bob:/bin/bash\nnobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n",
        )
        .expect("write passwd");
        let fs = RootFs::new(dir.path().to_path_buf(), Default::default());

        let names: Vec<String> = users(&fs).into_iter().map(|user| user.name).collect();

        assert_eq!(names, ["alice"]);
    }
}
