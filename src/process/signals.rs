//! Stopping a run (or a judge pass): the first SIGINT/SIGTERM lets in-flight items finish, the second exits.

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;

/// Exit code after Ctrl-C / SIGTERM, as shells report a SIGINT death.
pub const EXIT_INTERRUPTED: u8 = 130;

/// SIGINT and SIGTERM, taken as one stream.
struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    /// `None` when the handlers cannot be installed (the run then stops only by kill).
    fn install() -> Option<Signals> {
        Some(Signals {
            int: signal(SignalKind::interrupt()).ok()?,
            term: signal(SignalKind::terminate()).ok()?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

/// First SIGINT/SIGTERM: a message on the channel. Second: exit at once; whatever is in flight
/// stays pending, and redb discards any transaction that did not commit.
pub fn watch_signals() -> mpsc::UnboundedReceiver<()> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let Some(mut signals) = Signals::install() else {
            return;
        };
        signals.next().await;
        let _ = tx.send(());
        signals.next().await;
        eprintln!("second interrupt: exiting now; items in flight stay pending");
        std::process::exit(i32::from(EXIT_INTERRUPTED));
    });
    rx
}

/// For the time after the run's runtime is gone: a signal exits at once. tokio's handlers stay
/// installed for the life of the process, so without this SIGINT and SIGTERM would be swallowed
/// while the request server finishes an export it had taken.
pub fn exit_on_signal() {
    let watcher = || {
        let Ok(runtime) = super::local_runtime() else {
            return;
        };
        runtime.block_on(async {
            let Some(mut signals) = Signals::install() else {
                return;
            };
            signals.next().await;
            eprintln!("interrupt: exiting now");
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        });
    };
    if let Err(e) = std::thread::Builder::new()
        .name("signals".into())
        .spawn(watcher)
    {
        tracing::warn!("cannot watch for Ctrl-C after the run: {e}");
    }
}
