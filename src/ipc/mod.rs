//! Requests to a running `dgen run`. redb lets one process write a store, so while a run holds
//! it, `dgen export` and `dgen status` ask the run instead, over a Unix domain socket beside the
//! store (`<store>.sock`). The run answers from read snapshots between its commits, without
//! stopping.
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

pub use client::{ask, NoRun};
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

/// This process's effective uid, as the kernel reports a peer's: the credentials of one end of
/// a socket pair.
async fn own_uid() -> std::io::Result<u32> {
    let (a, _b) = tokio::net::UnixStream::pair()?;
    Ok(a.peer_cred()?.uid())
}
