//! The shutdown signal, passed to every stage as an argument (never a global).

use tokio_util::sync::CancellationToken;

/// A token cancelled on Ctrl-C or SIGTERM. A second signal exits at once.
pub fn on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("can install a SIGTERM handler");
        for n in 0.. {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            if n == 0 {
                tracing::info!("shutting down (signal again to exit at once)");
                trigger.cancel();
            } else {
                std::process::exit(130);
            }
        }
    });
    token
}
