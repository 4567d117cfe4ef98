//! A relay on loopback with its own state, and configs for clients of it: what the
//! demo, the benchmark and the tests all start from.

use std::{net::SocketAddr, path::Path, time::Duration};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{
    auth::{Role, TokenKey},
    config::{Config, RelayConfig},
    relay::{Relay, RelaySettings},
};

pub struct LoopbackRelay {
    pub addr: SocketAddr,
    /// Where the relay's state lives; clients get state dirs beside it.
    pub state_dir: std::path::PathBuf,
    pub fingerprint: String,
    pub key: TokenKey,
    pub task: JoinHandle<()>,
}

impl LoopbackRelay {
    /// Start a relay keeping its certificate and key in `state_dir`, listening on
    /// `listen` (`127.0.0.1:0` for any free port), until `shutdown`.
    pub fn start(
        state_dir: &Path,
        listen: &str,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let config = RelayConfig {
            listen: listen.into(),
            ..Default::default()
        };
        let settings = RelaySettings::from_state_dir(state_dir, &config)?;
        let key = settings.key.clone();
        let relay = Relay::bind(settings)?;
        Ok(Self {
            state_dir: state_dir.to_path_buf(),
            addr: relay.local_addr()?,
            fingerprint: relay.fingerprint().to_string(),
            key,
            task: tokio::spawn(relay.run(shutdown)),
        })
    }

    /// A config for a `role` client in `room` that dials `via` (this relay, or an
    /// emulated link in front of it), pinned, with a fresh day-long token and quick
    /// reconnects.
    pub fn client_config(&self, via: SocketAddr, room: &str, role: Role) -> Config {
        let mut c = Config::default();
        c.link.relay = Some(via.to_string());
        c.link.fingerprint = Some(self.fingerprint.clone());
        c.link.room = room.into();
        c.link.token = Some(self.key.issue(room, role, Duration::from_secs(24 * 3600)));
        c.link.max_backoff_secs = 1;
        // Each client's own state (outbox, admin password) beside the relay's, never the
        // user's real state directory.
        c.classroom.state_dir = Some(
            self.state_dir
                .join(format!("client-{}", rand::random::<u32>())),
        );
        c
    }
}
