//! The run's side: a socket bound at run start, answered on a thread of its own until the
//! [`Server`] is dropped. Each request runs the handler on a blocking thread, with a flag that
//! is set when the client hangs up; a long export is never timed out while the client waits.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::protocol::{self, Request, Response};

/// How long a connection may take to send its request line.
const REQUEST_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Answers one request: what the command prints, or why not. The flag is set when the client
/// went away, and a handler that works long should stop when it sees it.
pub trait Handler: Fn(Request, &AtomicBool) -> Result<String> + Send + Sync + 'static {}
impl<F: Fn(Request, &AtomicBool) -> Result<String> + Send + Sync + 'static> Handler for F {}

/// The listening socket; dropping it stops accepting, lets requests already taken finish and
/// removes the socket file.
pub struct Server {
    path: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds `<store>.sock` and starts answering. The caller must hold the store (redb's
    /// lock), so a socket there whose connect is refused is a killed run's, and is replaced;
    /// one a program listens on is not ([`Occupied`]).
    pub fn start(store: &Path, handler: impl Handler) -> Result<Server> {
        let path = super::socket_path(store);
        let listener = bind(&path)?;
        let runtime = crate::process::local_runtime().context("cannot start the request server")?;
        let (shutdown, stop) = oneshot::channel();
        let handler = Arc::new(handler);
        let thread = std::thread::Builder::new()
            .name("dgen-requests".into())
            .spawn(move || runtime.block_on(accept(listener, handler, stop)))
            .context("cannot start the request server")?;
        Ok(Server {
            path,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Gone first, so new clients learn at once that no run answers.
        let _ = std::fs::remove_file(&self.path);
        super::Holder::remove(&self.path);
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A socket at the run's socket path that a program listens on (or may): never removed, and
/// the run does not start, since clients would ask that program instead of the run.
#[derive(Debug, thiserror::Error)]
#[error("{} is a socket {why}; dgen will not remove it, and a run of this store cannot be reached while it is there: stop that program or move the socket away, then run again", .path.display())]
pub struct Occupied {
    pub path: PathBuf,
    why: String,
}

/// Replaces a stale socket or a symlink at `path` (never following it) with a socket only the
/// owner may use. A socket a program listens on is refused ([`Occupied`]), as is anything that
/// is not a socket.
fn bind(path: &Path) -> Result<std::os::unix::net::UnixListener> {
    let address = super::Address::of(path)?;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => bail!(
            "{} is a folder; remove it so that dgen run can put its socket there",
            path.display()
        ),
        // Someone's file: never removed on a guess.
        Ok(m) if !m.file_type().is_socket() && !m.file_type().is_symlink() => bail!(
            "{} is a file, not a socket; move it away so that dgen run can put its socket there",
            path.display()
        ),
        Ok(m) => {
            if m.file_type().is_socket() {
                match std::os::unix::net::UnixStream::connect(&address.path) {
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        let whose = match super::Holder::read(path) {
                            Some(h) if h.host != super::this_host() => format!(
                                " (its run was on host {}, pid {}, and the store's lock is now this run's)",
                                h.host, h.pid
                            ),
                            _ => String::new(),
                        };
                        tracing::info!(
                            "replacing the stale socket {} of a killed run{whose}",
                            path.display()
                        );
                    }
                    Ok(_) => {
                        return Err(Occupied {
                            path: path.to_path_buf(),
                            why: "another program is listening on".into(),
                        }
                        .into())
                    }
                    Err(e) => {
                        return Err(Occupied {
                            path: path.to_path_buf(),
                            why: format!("that may have a listener: connecting to it failed ({e})"),
                        }
                        .into())
                    }
                }
            } else {
                tracing::warn!(
                    "replacing the symlink {}, which no dgen run of this store made",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
        Err(_) => {}
    }
    let listener = std::os::unix::net::UnixListener::bind(&address.path)
        .with_context(|| format!("cannot create the socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {} to its owner", path.display()))?;
    if let Err(e) = super::Holder::me().write(path) {
        tracing::debug!("cannot note this host beside {}: {e}", path.display());
    }
    listener.set_nonblocking(true)?;
    Ok(listener)
}

async fn accept<H: Handler>(
    listener: std::os::unix::net::UnixListener,
    handler: Arc<H>,
    mut stop: oneshot::Receiver<()>,
) {
    let (listener, me) = match (
        tokio::net::UnixListener::from_std(listener),
        super::own_uid().await,
    ) {
        (Ok(l), Ok(me)) => (l, me),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!("cannot answer export and status requests: {e}");
            return;
        }
    };
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve(stream, handler.clone(), me));
                }
                Err(e) => {
                    // A lasting error (out of file descriptors, say) must not spin.
                    tracing::warn!("cannot accept a request: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    // Requests already taken are answered before the run exits.
    if !connections.is_empty() {
        tracing::info!(
            "answering {} export/status requests before exiting (Ctrl-C exits now)",
            connections.len()
        );
    }
    while connections.join_next().await.is_some() {}
}

async fn serve<H: Handler>(stream: UnixStream, handler: Arc<H>, me: u32) {
    match stream.peer_cred() {
        Ok(peer) if peer.uid() == me => {}
        Ok(peer) => {
            tracing::warn!(
                "refused a request from uid {}: only the store owner's processes (uid {me}) may ask",
                peer.uid()
            );
            return;
        }
        Err(e) => {
            tracing::warn!("refused a request whose sender is unknown: {e}");
            return;
        }
    }
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read.take(protocol::MAX_REQUEST_BYTES));
    let mut line = String::new();
    // A client sends its request at once; one that does not would hold up the run's exit.
    match tokio::time::timeout(REQUEST_WAIT, reader.read_line(&mut line)).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) | Err(_) => return,
    }
    let response = match protocol::decode::<Request>(&line) {
        Ok(request) => {
            let Some(response) = run_handler(request, handler, &mut reader).await else {
                return;
            };
            response
        }
        Err(message) => Response::Err { message },
    };
    let _ = write.write_all(&protocol::encode(&response)).await;
}

/// Runs the handler on a blocking thread; `None` when the client hung up first (the handler is
/// told, and finished, and nobody is left to answer).
async fn run_handler<H: Handler>(
    request: Request,
    handler: Arc<H>,
    client: &mut (impl AsyncReadExt + Unpin),
) -> Option<Response> {
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let mut job = tokio::task::spawn_blocking(move || handler(request, &flag));
    let joined = tokio::select! {
        joined = &mut job => joined,
        () = hung_up(client) => {
            cancel.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = job.await;
            return None;
        }
    };
    Some(match joined {
        Ok(Ok(output)) => Response::Ok { output },
        Ok(Err(e)) => Response::Err {
            message: format!("{e:#}"),
        },
        Err(e) => Response::Err {
            message: format!("the run failed to answer: {e}"),
        },
    })
}

/// Returns when the client closes its end (it sends nothing after its request).
async fn hung_up(client: &mut (impl AsyncReadExt + Unpin)) {
    let mut buf = [0u8; 64];
    while let Ok(n) = client.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}
