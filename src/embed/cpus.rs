//! How many CPUs this process may use: the affinity mask (`taskset`, a scheduler's cpuset)
//! and the cgroup CPU quota (a container's or a job's `--cpus`), not the host's count, which
//! is what ONNX Runtime and `nproc` on a big host would otherwise go by.

use std::path::{Path, PathBuf};

/// The CPUs this process may use: the smaller of its affinity mask and its cgroup quota
/// (rounded up), at least 1.
pub fn available() -> usize {
    let affinity =
        affinity().unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    combine(affinity, quota(Path::new("/sys/fs/cgroup"), &cgroup))
}

/// The smaller of the two, the quota rounded up (1.5 CPUs can keep 2 busy part of the time).
pub fn combine(affinity: usize, quota: Option<f64>) -> usize {
    let quota = quota.map_or(usize::MAX, |q| (q.ceil() as usize).max(1));
    affinity.min(quota).max(1)
}

/// CPUs in the calling thread's affinity mask (`sched_getaffinity`); None where it cannot be
/// read.
#[allow(unsafe_code)]
pub fn affinity() -> Option<usize> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `set` is a plain bit mask owned by this frame, passed with its size;
        // sched_getaffinity writes within it and CPU_COUNT only reads it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
                return usize::try_from(libc::CPU_COUNT(&set))
                    .ok()
                    .filter(|n| *n > 0);
            }
        }
    }
    None
}

/// The CPU quota of this process's cgroup and its ancestors (the smallest), under the cgroup
/// file system at `root`, given `/proc/self/cgroup`: cgroup v2 `cpu.max`, else v1
/// `cpu.cfs_quota_us` / `cpu.cfs_period_us`. None when nothing limits it.
pub fn quota(root: &Path, proc_cgroup: &str) -> Option<f64> {
    let mut best: Option<f64> = None;
    let mut keep = |q: Option<f64>| {
        if let Some(q) = q {
            best = Some(best.map_or(q, |b: f64| b.min(q)));
        }
    };
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            for dir in ancestors(root, path) {
                keep(read(&dir.join("cpu.max")).and_then(|s| parse_cpu_max(&s)));
            }
        } else if controllers.split(',').any(|c| c == "cpu") {
            for base in ["cpu", "cpu,cpuacct"] {
                for dir in ancestors(&root.join(base), path) {
                    let q = read(&dir.join("cpu.cfs_quota_us"));
                    let p = read(&dir.join("cpu.cfs_period_us"));
                    if let (Some(q), Some(p)) = (q, p) {
                        keep(parse_cfs(&q, &p));
                    }
                }
            }
        }
    }
    best
}

/// `cpu.max` of cgroup v2: "QUOTA PERIOD" in microseconds, QUOTA "max" for no limit.
pub fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut parts = text.split_whitespace();
    let quota = parts.next()?;
    let period: f64 = parts.next().map_or(Some(100_000.0), |p| p.parse().ok())?;
    if quota == "max" {
        return None;
    }
    let quota: f64 = quota.parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// cgroup v1: a quota of -1 means no limit.
fn parse_cfs(quota: &str, period: &str) -> Option<f64> {
    let quota: f64 = quota.trim().parse().ok()?;
    let period: f64 = period.trim().parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// `root/path` and each of its parents up to `root`.
fn ancestors(root: &Path, path: &str) -> Vec<PathBuf> {
    let mut dirs = vec![root.to_path_buf()];
    let mut dir = root.to_path_buf();
    for part in path.split('/').filter(|p| !p.is_empty() && *p != "..") {
        dir = dir.join(part);
        dirs.push(dir.clone());
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_strings() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("200000 100000\n"), Some(2.0));
        assert_eq!(parse_cpu_max("150000 100000"), Some(1.5));
        assert_eq!(parse_cpu_max("50000"), Some(0.5));
        assert_eq!(parse_cpu_max(""), None);
        assert_eq!(parse_cpu_max("lots 100000"), None);
        assert_eq!(parse_cpu_max("0 100000"), None);
        assert_eq!(parse_cfs("-1", "100000"), None);
        assert_eq!(parse_cfs("300000\n", "100000\n"), Some(3.0));
    }

    #[test]
    fn the_quota_rounds_up_and_never_raises_the_affinity() {
        assert_eq!(combine(16, None), 16);
        assert_eq!(combine(16, Some(1.5)), 2);
        assert_eq!(combine(16, Some(0.2)), 1);
        assert_eq!(combine(2, Some(8.0)), 2);
        assert_eq!(combine(0, None), 1);
    }

    /// A cgroup tree on disk: the smallest quota on the way from the root to the process's
    /// group counts, for v2 and v1 alike.
    #[test]
    fn quotas_are_read_along_the_cgroup_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("jobs/one")).unwrap();
        std::fs::write(root.join("cpu.max"), "max 100000\n").unwrap();
        std::fs::write(root.join("jobs/cpu.max"), "400000 100000\n").unwrap();
        std::fs::write(root.join("jobs/one/cpu.max"), "250000 100000\n").unwrap();
        assert_eq!(quota(root, "0::/jobs/one\n"), Some(2.5));
        assert_eq!(quota(root, "0::/jobs\n"), Some(4.0));
        assert_eq!(quota(root, "0::/\n"), None);
        assert_eq!(quota(root, "0::/elsewhere\n"), None);

        std::fs::create_dir_all(root.join("cpu,cpuacct/docker/abc")).unwrap();
        let v1 = root.join("cpu,cpuacct/docker/abc");
        std::fs::write(v1.join("cpu.cfs_quota_us"), "150000\n").unwrap();
        std::fs::write(v1.join("cpu.cfs_period_us"), "100000\n").unwrap();
        assert_eq!(
            quota(root, "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n"),
            Some(1.5)
        );
    }

    /// The affinity mask is the calling thread's: pinned to one CPU, a thread sees one.
    #[test]
    #[allow(unsafe_code)]
    fn affinity_follows_the_mask() {
        let all = affinity().expect("sched_getaffinity works on Linux");
        assert!(all >= 1);
        let first = (0..libc::CPU_SETSIZE as usize)
            .find(|cpu| {
                // SAFETY: as in `affinity`.
                unsafe {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
                    libc::CPU_ISSET(*cpu, &set)
                }
            })
            .unwrap();
        let pinned = std::thread::spawn(move || {
            // SAFETY: a mask owned by this frame, applied to this thread only.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(first, &mut set);
                assert_eq!(
                    libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
                    0
                );
            }
            (affinity(), available())
        })
        .join()
        .unwrap();
        assert_eq!(pinned, (Some(1), 1));
    }
}
