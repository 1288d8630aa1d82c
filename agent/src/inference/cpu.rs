//! CPU facts for choosing the number of generation threads.

use std::collections::BTreeSet;

use crate::rootfs::RootFs;

/// Counts the physical cores among the online CPUs: CPUs that share a
/// `(physical_package_id, core_id)` pair in sysfs are SMT siblings of one
/// core. Returns `None` when sysfs has no topology.
pub fn physical_cores(fs: &RootFs) -> Option<u32> {
    let online = fs
        .read_first_line("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|text| parse_cpu_list(&text))?;
    let mut cores = BTreeSet::new();
    for cpu in online {
        let topology = format!("/sys/devices/system/cpu/cpu{cpu}/topology");
        let package = fs
            .read_first_line(&format!("{topology}/physical_package_id"))
            .ok()?;
        let core = fs.read_first_line(&format!("{topology}/core_id")).ok()?;
        cores.insert((package.trim().to_owned(), core.trim().to_owned()));
    }
    u32::try_from(cores.len()).ok().filter(|count| *count > 0)
}

/// Returns the default thread count: one per physical core, but no more
/// than the CPUs this process may run on.
pub fn default_threads(fs: &RootFs) -> u32 {
    let allowed = std::thread::available_parallelism()
        .ok()
        .and_then(|count| u32::try_from(count.get()).ok())
        .unwrap_or(1);
    physical_cores(fs).map_or(allowed, |cores| cores.min(allowed))
}

/// Parses a sysfs CPU list such as `0-3,8,10-11`.
fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|part| !part.is_empty()) {
        match part.split_once('-') {
            Some((first, last)) => {
                let first: u32 = first.parse().ok()?;
                let last: u32 = last.parse().ok()?;
                if last < first || last - first > 65_536 {
                    return None;
                }
                cpus.extend(first..=last);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use super::*;
    use crate::rootfs::FsOverrides;

    fn write(root: &Path, path: &str, text: &str) {
        let full = root.join(path.trim_start_matches('/'));
        fs::create_dir_all(full.parent().expect("parent")).expect("create folders");
        fs::write(full, text).expect("write file");
    }

    fn topology(root: &Path, cpu: u32, package: u32, core: u32) {
        let base = format!("/sys/devices/system/cpu/cpu{cpu}/topology");
        write(
            root,
            &format!("{base}/physical_package_id"),
            &format!("{package}\n"),
        );
        write(root, &format!("{base}/core_id"), &format!("{core}\n"));
    }

    #[test]
    fn cpu_list_parses() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11\n"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("a"), None);
    }

    #[test]
    fn smt_siblings_count_once() {
        let dir = tempfile::tempdir().expect("temporary directory");
        write(dir.path(), "/sys/devices/system/cpu/online", "0-3\n");
        // Two packages with one core each, two threads per core.
        topology(dir.path(), 0, 0, 0);
        topology(dir.path(), 1, 0, 0);
        topology(dir.path(), 2, 1, 0);
        topology(dir.path(), 3, 1, 0);
        let fs = RootFs::new(dir.path().to_owned(), FsOverrides::default());

        assert_eq!(physical_cores(&fs), Some(2));
    }

    #[test]
    fn missing_topology_gives_none() {
        let dir = tempfile::tempdir().expect("temporary directory");
        write(dir.path(), "/sys/devices/system/cpu/online", "0-1\n");
        topology(dir.path(), 0, 0, 0);
        let fs = RootFs::new(dir.path().to_owned(), FsOverrides::default());

        assert_eq!(physical_cores(&fs), None);
    }
}
