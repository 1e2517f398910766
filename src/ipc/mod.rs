//! Requests to a running `dgen run`. redb lets one process write a store, so while a run holds
//! it, `dgen export` and `dgen status` ask the run instead, over a Unix domain socket beside the
//! store (`<store>.sock`). The run answers from read snapshots between its commits, without
//! stopping.
//!
//! A store path too long for a socket address is reached through a handle on its folder
//! ([`Address`]); beside the socket the run names its host ([`Holder`]), since a socket does not
//! cross hosts on a shared filesystem and a client there should say so. A socket another program
//! listens on is never removed: the run refuses to start instead.
//!
//! Only the store owner's processes take part: the socket is mode 0600 and each side checks the
//! other's uid. Nothing else in the store's folder is read, so nothing planted there steers the
//! run; a request lives as long as its connection, so a killed client's request dies with it
//! (an export it started is cancelled and replaces no file). The wire format is
//! [`protocol`]'s own versioned types, not the command line's.
//!
//! This module knows nothing of exports or status: the server takes a handler.

pub mod client;
pub mod protocol;
pub mod server;

use std::path::{Path, PathBuf};

pub use client::{ask, NoRun, Unreached};
pub use protocol::{Request, Response};
pub use server::Server;

/// The socket of the run holding `store`: `<store>.sock` beside it.
pub fn socket_path(store: &Path) -> PathBuf {
    let mut name = store
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "dgen.redb".into());
    name.push(".sock");
    store.with_file_name(name)
}

/// The longest path a Unix socket address holds: `sun_path` less its closing NUL.
const MAX_ADDRESS: usize = 107;

/// What `bind` and `connect` are given for a socket: its path, or, when that is longer than a
/// socket address holds (a store deep in a project tree), `/proc/self/fd/N/<name>` through a
/// handle on its folder, which Linux resolves to the same file. Only the name must be short.
pub(crate) struct Address {
    pub path: PathBuf,
    /// The folder's handle, open while the alias is used.
    _folder: Option<std::fs::File>,
}

/// A socket's name too long for a socket address even through its folder's handle.
#[derive(Debug, thiserror::Error)]
#[error("the socket {} cannot be reached: its name is {len} bytes, and a Unix socket address holds at most {max} here; give the store a shorter file name", .path.display())]
pub struct TooLong {
    pub path: PathBuf,
    pub len: usize,
    pub max: usize,
}

impl Address {
    pub(crate) fn of(path: &Path) -> Result<Address, TooLong> {
        use std::os::fd::AsRawFd;
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::OpenOptionsExt;
        if path.as_os_str().len() <= MAX_ADDRESS {
            return Ok(Address {
                path: path.to_path_buf(),
                _folder: None,
            });
        }
        let name = path.file_name().unwrap_or_default();
        let folder = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let too_long = |max: usize| TooLong {
            path: path.to_path_buf(),
            len: name.as_bytes().len(),
            max,
        };
        // O_PATH: a handle that names the folder without reading it. Without one, the path
        // as it is, and bind or connect says what is wrong.
        let Ok(handle) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(folder)
        else {
            return Ok(Address {
                path: path.to_path_buf(),
                _folder: None,
            });
        };
        let alias = Path::new("/proc/self/fd")
            .join(handle.as_raw_fd().to_string())
            .join(name);
        let max = MAX_ADDRESS - (alias.as_os_str().len() - name.len());
        if alias.as_os_str().len() > MAX_ADDRESS {
            return Err(too_long(max));
        }
        Ok(Address {
            path: alias,
            _folder: Some(handle),
        })
    }
}

/// Who made a socket: the run writes its host and pid beside its socket (`<socket>.host`), so
/// that a client on another host sharing the filesystem, where no socket connects, can say
/// where the run is instead of guessing. Only messages read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
}

impl Holder {
    fn path(socket: &Path) -> PathBuf {
        let mut name = socket.as_os_str().to_os_string();
        name.push(".host");
        PathBuf::from(name)
    }

    /// This process on this host.
    pub fn me() -> Holder {
        Holder {
            host: this_host(),
            pid: std::process::id(),
        }
    }

    /// Written beside the socket; whatever was there (never followed) is replaced.
    fn write(&self, socket: &Path) -> std::io::Result<()> {
        use std::io::Write;
        let path = Holder::path(socket);
        let _ = std::fs::remove_file(&path);
        let mut file = std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(&path)?;
        writeln!(file, "{}\n{}", self.host, self.pid)
    }

    fn remove(socket: &Path) {
        let _ = std::fs::remove_file(Holder::path(socket));
    }

    /// What the file beside `socket` says, if it is a file of the expected form (never
    /// following a symlink; the host limited to a host name's characters).
    pub fn read(socket: &Path) -> Option<Holder> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let mut text = String::new();
        // Non-blocking, so a FIFO planted under the name cannot hang the open; then only a
        // regular file is read.
        let file = std::fs::File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(Holder::path(socket))
            .ok()?;
        if !file.metadata().ok()?.is_file() {
            return None;
        }
        file.take(512).read_to_string(&mut text).ok()?;
        let mut lines = text.lines();
        let host = lines.next()?.trim();
        let pid = lines.next()?.trim().parse().ok()?;
        let valid = !host.is_empty()
            && host.len() <= 255
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
        valid.then(|| Holder {
            host: host.to_string(),
            pid,
        })
    }

    /// Whether this is a process on this host that is gone (a killed run's leftover).
    pub fn is_dead_here(&self) -> bool {
        self.host == this_host() && !Path::new("/proc").join(self.pid.to_string()).exists()
    }
}

/// This host's name, as the kernel has it.
pub fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// This process's effective uid, as the kernel reports a peer's: the credentials of one end of
/// a socket pair.
async fn own_uid() -> std::io::Result<u32> {
    let (a, _b) = tokio::net::UnixStream::pair()?;
    Ok(a.peer_cred()?.uid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_planted_as_the_holder_file_is_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("dgen.redb.sock");
        let made = std::process::Command::new("mkfifo")
            .arg(Holder::path(&socket))
            .status()
            .unwrap();
        assert!(made.success());
        assert!(Holder::read(&socket).is_none());
        std::fs::remove_file(Holder::path(&socket)).unwrap();
        std::fs::write(Holder::path(&socket), "host-a\n42\n").unwrap();
        let holder = Holder::read(&socket).unwrap();
        assert_eq!((holder.host.as_str(), holder.pid), ("host-a", 42));
    }
}
