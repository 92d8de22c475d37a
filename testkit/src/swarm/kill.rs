//! A node's Docker lost at once, as in a power cut.

use crate::dockerd::Dockerd;
use crate::wait_until;

/// Kills (SIGKILL) a node's dockerd, everything in its mount namespace
/// (containerd, shims) and their descendants (the containers, in their
/// own namespaces): the node's Docker lost at once, as in a power cut.
/// The set is taken before the first kill (a killed shim's children are
/// reparented).
pub fn kill_dockerd(dockerd: &Dockerd) {
    use std::collections::{HashMap, HashSet};
    use std::os::unix::fs::MetadataExt;
    let pid = dockerd.pid();
    let ns_of = |p: u32| {
        std::fs::metadata(format!("/proc/{p}/ns/mnt"))
            .ok()
            .map(|m| (m.dev(), m.ino()))
    };
    let key = ns_of(pid).expect("dockerd's mount namespace");
    let mut parent = HashMap::new();
    let mut doomed = HashSet::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        // `pid (comm) state ppid ...`: comm may hold spaces, not `)`.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parent.insert(p, ppid);
        }
        if ns_of(p) == Some(key) {
            doomed.insert(p);
        }
    }
    loop {
        let children: Vec<u32> = parent
            .iter()
            .filter(|(p, pp)| doomed.contains(*pp) && !doomed.contains(*p))
            .map(|(p, _)| *p)
            .collect();
        if children.is_empty() {
            break;
        }
        doomed.extend(children);
    }
    for p in &doomed {
        let _ = std::process::Command::new("kill")
            .args(["-9", &p.to_string()])
            .status();
    }
    wait_until("the node's Docker gone", 30, || {
        doomed.iter().all(|p| {
            // Gone, or a zombie its new parent has not reaped yet.
            std::fs::read_to_string(format!("/proc/{p}/stat")).map_or(true, |stat| {
                stat.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
        })
    });
}
