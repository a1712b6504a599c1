//! A GPU process's pod and name from the host's `/proc`: `/proc/<pid>/cgroup` names the pod
//! UID under both cgroup v1 (`…/kubepods/burstable/pod<uid>/<container>`) and the systemd
//! driver (`…/kubepods-burstable-pod<uid_with_underscores>.slice/…`); `/proc/<pid>/comm` is
//! the command name.

use std::path::Path;

/// The pod UID in the cgroup file of `pid` under `proc_root`, if the process runs in a pod.
pub fn pod_uid(proc_root: &Path, pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
    pod_uid_from_cgroup(&text)
}

/// The process's command name (`/proc/<pid>/comm`), if readable.
pub fn command_name(proc_root: &Path, pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("comm")).ok()?;
    let name = text.trim_end();
    (!name.is_empty()).then(|| name.to_owned())
}

/// Finds `pod<uid>` in cgroup lines; systemd's `_` separators become `-`.
pub fn pod_uid_from_cgroup(text: &str) -> Option<String> {
    for line in text.lines() {
        // "hierarchy-ID:controllers:path"
        let path = line.splitn(3, ':').nth(2).unwrap_or(line);
        if !path.contains("kubepods") {
            continue;
        }
        for segment in path.split('/') {
            // `kubepods-besteffort-pod<uid>.slice`: "pod" also occurs inside "kubepods".
            for (at, _) in segment.match_indices("pod") {
                let uid: String = segment[at + 3..]
                    .chars()
                    .take_while(|c| c.is_ascii_hexdigit() || *c == '-' || *c == '_')
                    .collect();
                if uid.len() == 36 {
                    return Some(uid.replace('_', "-"));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "1f6d8a2c-3b4e-4c5d-8e9f-0a1b2c3d4e5f";

    #[test]
    fn finds_the_pod_uid_under_every_cgroup_layout() {
        let v1 = format!("12:memory:/kubepods/burstable/pod{UID}/0123456789abcdef\n");
        let systemd = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-0123abcd.scope\n",
            UID.replace('-', "_")
        );
        let guaranteed = format!("0::/kubepods/pod{UID}/0123456789abcdef\n");
        for text in [v1, systemd, guaranteed] {
            assert_eq!(pod_uid_from_cgroup(&text).as_deref(), Some(UID), "{text}");
        }
        assert_eq!(
            pod_uid_from_cgroup("0::/user.slice/user-1000.slice/session-2.scope\n"),
            None
        );
    }

    #[test]
    fn reads_cgroup_and_comm_under_a_proc_root() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("4242");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("cgroup"),
            format!("0::/kubepods/burstable/pod{UID}/abc\n"),
        )
        .unwrap();
        std::fs::write(dir.join("comm"), "python3\n").unwrap();
        assert_eq!(pod_uid(root.path(), 4242).as_deref(), Some(UID));
        assert_eq!(command_name(root.path(), 4242).as_deref(), Some("python3"));
        assert_eq!(pod_uid(root.path(), 1), None);
    }
}
