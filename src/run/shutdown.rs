//! Stopping a run: the first SIGINT/SIGTERM lets in-flight items finish, the second exits.

use tokio::sync::mpsc;

/// Exit code after Ctrl-C / SIGTERM, as shells report a SIGINT death.
pub const EXIT_INTERRUPTED: u8 = 130;

/// First SIGINT/SIGTERM: a message on the channel. Second: exit at once; whatever is in flight
/// stays pending, and redb discards any transaction that did not commit.
/// For the time after the run's runtime is gone: a signal exits at once. tokio's handlers stay
/// installed for the life of the process, so without this SIGINT and SIGTERM would be swallowed
/// while the request server finishes an export it had taken.
pub fn exit_on_signal() {
    let watcher = || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
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

pub fn watch_signals() -> mpsc::UnboundedReceiver<()> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        let mut seen = 0;
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            seen += 1;
            if seen >= 2 {
                eprintln!("second interrupt: exiting now; items in flight stay pending");
                std::process::exit(i32::from(EXIT_INTERRUPTED));
            }
            let _ = tx.send(());
        }
    });
    rx
}
