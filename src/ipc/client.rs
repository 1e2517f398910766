//! The command's side: sends one request to the run holding a store and waits, without a
//! time-out, for its answer; a run that dies meanwhile closes the connection, which ends the
//! wait.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::protocol::{self, Request, Response};
use super::{Address, Holder, TooLong};

/// No run answers on the socket, and why.
#[derive(Debug, thiserror::Error)]
#[error("no dgen run answers on {}", .path.display())]
pub struct NoRun {
    pub path: PathBuf,
    pub why: Unreached,
}

#[derive(Debug)]
pub enum Unreached {
    /// Nothing at the socket's path (or not a socket).
    NoSocket,
    /// A socket no process on this host listens on, and who made it, when that is known: a
    /// killed run's, or a run's on another host sharing the filesystem.
    Refused(Option<Holder>),
    /// A name too long for a socket address.
    TooLong(TooLong),
}

/// Asks the run holding `store`; [`NoRun`] when none listens.
pub fn ask(store: &Path, request: &Request) -> Result<Response> {
    let runtime = crate::process::local_runtime()?;
    runtime.block_on(exchange(store, request))
}

async fn exchange(store: &Path, request: &Request) -> Result<Response> {
    let path = super::socket_path(store);
    let no_run = |why| {
        anyhow::Error::new(NoRun {
            path: path.clone(),
            why,
        })
    };
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_socket() => {}
        _ => return Err(no_run(Unreached::NoSocket)),
    }
    let address = match Address::of(&path) {
        Ok(a) => a,
        Err(e) => return Err(no_run(Unreached::TooLong(e))),
    };
    let stream = match UnixStream::connect(&address.path).await {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(no_run(Unreached::NoSocket))
        }
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(no_run(Unreached::Refused(Holder::read(&path))))
        }
        Err(e) => return Err(e).with_context(|| format!("cannot connect to {}", path.display())),
    };
    let me = super::own_uid().await?;
    let owner = stream.peer_cred()?.uid();
    if owner != me {
        bail!(
            "{} is served by uid {owner}, not by you (uid {me}); refusing to send it a request: ask its owner, or remove it",
            path.display()
        );
    }
    let (read, mut write) = stream.into_split();
    write.write_all(&protocol::encode(request)).await?;
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    if line.is_empty() {
        bail!(
            "the dgen run holding {} stopped before it answered; run the command again",
            store.display()
        );
    }
    protocol::decode(&line).map_err(|message| anyhow::anyhow!("{}: {message}", path.display()))
}
