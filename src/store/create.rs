//! A new store made under a temporary name beside its final one, and moved there only once it
//! holds what it was made for (`dgen plan`'s plan, `dgen merge`'s merged plan): a command killed
//! while redb creates the file (sized, but not yet marked as a database) or before its first
//! commit leaves nothing under the store's name for the next command to refuse.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::Store;

impl Store {
    /// Creates the store at `path`, where there is none yet (no file, or an empty one), by way
    /// of `<path>.partial-<pid>`: `fill` writes it, then it takes the name `path` (never over a
    /// store another process made there meanwhile) and is opened there again. Temporary files
    /// of processes that are gone, unwritten for an hour, are removed first; this one's is
    /// removed when `fill` fails.
    pub fn create_in_place(path: &Path, fill: impl FnOnce(&Store) -> Result<()>) -> Result<Store> {
        if path.is_dir() {
            bail!(
                "--store {} is a folder; name a file such as dgen.redb",
                path.display()
            );
        }
        let name = path
            .file_name()
            .with_context(|| format!("{} is not a file path", path.display()))?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let prefix = format!("{}.partial-", name.to_string_lossy());
        remove_dead_partials(&dir, &prefix);
        let temp = dir.join(format!("{prefix}{}", std::process::id()));
        // One of this process's number left by a process before it (the number was reused):
        // removed, the link itself if it is one, and created anew below, never followed.
        let _ = std::fs::remove_file(&temp);
        let store = Store::create_new(&temp)?;
        let filled = fill(&store);
        drop(store);
        let published = filled.and_then(|()| publish(&temp, path));
        if published.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        published?;
        Store::open_existing(path)
    }
}

/// Gives the complete store at `temp` the name `path`. A hard link, which fails when `path`
/// exists, so that a store another `dgen plan` made there in the meantime is not replaced; an
/// empty file there holds nothing and is replaced.
fn publish(temp: &Path, path: &Path) -> Result<()> {
    let rename = || {
        std::fs::rename(temp, path)
            .with_context(|| format!("cannot rename {} to {}", temp.display(), path.display()))
    };
    match std::fs::hard_link(temp, path) {
        Ok(()) => {
            // The store is in place: a temporary name left behind is litter, not a failure.
            if let Err(e) = std::fs::remove_file(temp) {
                tracing::warn!("cannot remove {}: {e}", temp.display());
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            match std::fs::symlink_metadata(path) {
                Ok(m) if m.is_file() && m.len() == 0 => rename(),
                _ => bail!(
                    "another process created {} while this one was writing it; nothing was replaced: check what it holds (`dgen --store {} status`), or pass another --store",
                    path.display(),
                    path.display()
                ),
            }
        }
        // A file system without hard links: renamed, unless something took the name since.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::Unsupported | std::io::ErrorKind::PermissionDenied
            ) =>
        {
            if std::fs::symlink_metadata(path).is_ok() {
                bail!(
                    "another process created {} while this one was writing it; nothing was replaced: check what it holds (`dgen --store {} status`), or pass another --store",
                    path.display(),
                    path.display()
                );
            }
            rename()
        }
        Err(e) => Err(e)
            .with_context(|| format!("cannot give {} the name {}", temp.display(), path.display())),
    }
}

/// How long a temporary store nobody writes stays before a later command removes it.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// `<prefix><pid>` files whose process is gone: left by a command killed while it made them.
fn remove_dead_partials(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(prefix) else {
            continue;
        };
        // On a file system several nodes share (a cluster's), a process gone here may be alive
        // on another node: only a file nobody wrote for an hour is taken for a dead one's.
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|at| at.elapsed().is_ok_and(|age| age >= STALE_AFTER));
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() && stale {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => tracing::info!(
                    "removed {}, left by a command that was cut short while creating a store",
                    entry.path().display()
                ),
                Err(e) => tracing::warn!("cannot remove {}: {e}", entry.path().display()),
            }
        }
    }
}
