//! `buttervolume run`: start the daemon.
//!
//! Order matters for a managed plugin: Docker kills a plugin whose socket is
//! not up within ~9.5 s, so the socket is bound first, before any slow work
//! (btrfs checks, sweeping leftovers). Connections that arrive meanwhile wait
//! in the listen backlog.

use std::sync::Arc;

use crate::config::Config;
use crate::server::{self, AppState, ServerError};
use crate::volumes::VolumeStore;

/// Resolves when SIGTERM or SIGINT arrives.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

/// Runs the daemon until a termination signal.
pub async fn run(config: Config) -> Result<(), ServerError> {
    let config = Arc::new(config);
    let listener = server::bind(&config.socket).await?;
    tracing::info!(socket = %config.socket.display(), "listening");
    let opened = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || VolumeStore::open(config))
            .await
            .expect("store opening does not panic")
    };
    let store = match opened {
        Ok(store) => store,
        Err(e) => {
            // Leave no socket behind that Docker would wait on.
            drop(listener);
            let _ = std::fs::remove_file(&config.socket);
            return Err(e.into());
        }
    };
    let state = Arc::new(AppState {
        config: config.clone(),
        store: Arc::new(store),
    });
    server::serve(listener, state, shutdown_signal()).await;
    tracing::info!("stopped");
    Ok(())
}
