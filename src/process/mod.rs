//! What the process owns, shared by every stage that runs async work: the tokio runtimes
//! (built here, in one place, with the same settings) and SIGINT/SIGTERM handling.

pub mod signals;

use std::io;

use tokio::runtime::Runtime;

pub use signals::{exit_on_signal, watch_signals, EXIT_INTERRUPTED};

/// The runtime a stage's calls and writer run on (`run`, `run --batch`, `judge`): two worker
/// threads, enough to keep the HTTP calls and the bookkeeping moving; the CPU work (embedding,
/// the near-duplicate check) runs on threads of its own.
pub fn worker_runtime() -> io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()
}

/// A runtime on the calling thread, for a side task on a thread of its own (the request
/// server, a request to a running `dgen run`, the signal watcher after a run).
pub fn local_runtime() -> io::Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
