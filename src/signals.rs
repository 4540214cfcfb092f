//! Ctrl-C and SIGTERM as a cancellation token: every wait, request and retry backoff of the run
//! stops within moments, the engine saves its state and the command exits with code 4. A second
//! signal exits at once (the state file then holds the last completed save: every save is atomic).

use tokio_util::sync::CancellationToken;

/// Cancels the returned token on Ctrl-C or SIGTERM; a second signal exits the process at once.
pub fn cancel_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        if next_signal().await.is_err() {
            return;
        }
        t.cancel();
        if next_signal().await.is_ok() {
            eprintln!("interrupted again: exiting now (the last saved state stands)");
            std::process::exit(i32::from(crate::exit_code::INTERRUPTED));
        }
    });
    token
}

/// Waits for Ctrl-C or SIGTERM.
async fn next_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = int.recv() => Ok(()),
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await
}
