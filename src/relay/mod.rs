//! `classbox relay`: the public rendezvous and fan-out hop boxes dial out to.
//!
//! In: QUIC connections from teachers and boxes (moq-lite over raw QUIC). Out: each
//! room's broadcasts fanned out to every subscriber allowed to see them. Fan-out,
//! per-subscriber priority and stale-group skipping are moq-net's model (one origin,
//! producer/consumer handles, a slow reader skips to the latest group); this module
//! adds rooms, tokens, a connection limit and clean errors.

mod connection;

use std::{net::SocketAddr, path::Path, sync::Arc};

use moq_net::origin;
use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

use crate::{
    auth::TokenKey,
    transport::{TransportError, close, endpoint, tls},
};

pub use connection::RelayError;

/// Everything the relay needs to start.
pub struct RelaySettings {
    pub listen: SocketAddr,
    pub identity: tls::Identity,
    pub key: TokenKey,
    pub max_connections: usize,
}

/// The token-signing key's file name inside the relay's state dir.
pub const KEY_FILE: &str = "token-key.jwk";

impl RelaySettings {
    /// Load (or create on first start) the certificate and token key in `state_dir`.
    pub fn from_state_dir(
        state_dir: &Path,
        config: &crate::config::RelayConfig,
    ) -> Result<Self, anyhow::Error> {
        let identity = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => tls::Identity::load(cert, key)?,
            _ => tls::Identity::load_or_generate(state_dir, &config.names)?,
        };
        let key = TokenKey::load_or_create(&state_dir.join(KEY_FILE))?;
        Ok(Self {
            listen: config.listen.parse()?,
            identity,
            key,
            max_connections: config.max_connections,
        })
    }
}

pub struct Relay {
    endpoint: quinn::Endpoint,
    origin: origin::Producer,
    key: TokenKey,
    fingerprint: String,
    limit: Arc<Semaphore>,
}

impl Relay {
    /// Bind the UDP socket. The relay serves every moq ALPN moq-net speaks.
    pub fn bind(settings: RelaySettings) -> Result<Self, TransportError> {
        let fingerprint = settings.identity.fingerprint();
        let endpoint = endpoint::server(settings.listen, settings.identity, moq_net::ALPNS)?;
        let (origin, driver) = origin::Producer::new(origin::Config::default());
        tokio::spawn(moq_net::time::run(driver));
        Ok(Self {
            endpoint,
            origin,
            key: settings.key,
            fingerprint,
            limit: Arc::new(Semaphore::new(settings.max_connections)),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Serve until `shutdown`, then close every connection and wait for them.
    pub async fn run(self, shutdown: CancellationToken) {
        let tasks = TaskTracker::new();
        let mut next_id = 0u64;
        loop {
            let incoming = tokio::select! {
                _ = shutdown.cancelled() => break,
                incoming = self.endpoint.accept() => match incoming {
                    Some(incoming) => incoming,
                    None => break,
                },
            };
            next_id += 1;
            let remote = incoming.remote_address();
            let Ok(permit) = self.limit.clone().try_acquire_owned() else {
                tracing::warn!(%remote, "connection limit reached; refusing");
                incoming.refuse();
                continue;
            };
            let connection = connection::Connection {
                id: next_id,
                origin: self.origin.clone(),
                key: self.key.clone(),
            };
            let span = tracing::info_span!("conn", id = next_id, %remote);
            tasks.spawn(
                async move {
                    match connection.serve(incoming).await {
                        Ok(()) => tracing::info!("closed"),
                        Err(e) if e.is_client_fault() => {
                            tracing::warn!(error = %e, "client refused")
                        }
                        Err(e) => tracing::info!(error = %e, "closed"),
                    }
                    drop(permit);
                }
                .instrument(span),
            );
        }
        self.endpoint
            .close(close::SHUTDOWN.into(), b"relay shutting down");
        tasks.close();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), tasks.wait()).await;
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(500),
            self.endpoint.wait_idle(),
        )
        .await;
    }
}
