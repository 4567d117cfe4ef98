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
        let token = self.key.issue(room, role, Duration::from_secs(24 * 3600));
        client_config(&self.state_dir, via, &self.fingerprint, room, Some(token))
    }
}

/// A stock moq-relay on loopback (the district's relay, for interop checks and the
/// bench's `--moq-relay`), with a certificate of ours and anonymous access to one
/// room: moq-relay delegates JWT checks to an auth server we do not run.
pub struct StockRelay {
    pub addr: SocketAddr,
    pub state_dir: std::path::PathBuf,
    pub fingerprint: String,
    pub room: String,
    child: tokio::process::Child,
}

impl StockRelay {
    /// Where `cargo install moq-relay` (run by `image/dev-setup.sh --test`) puts it,
    /// or `$MOQ_RELAY_BIN`.
    pub fn installed() -> Option<std::path::PathBuf> {
        let candidates = [
            std::env::var_os("MOQ_RELAY_BIN").map(std::path::PathBuf::from),
            std::env::var_os("HOME")
                .map(|h| std::path::PathBuf::from(h).join(".cargo/bin/moq-relay")),
            Some("/usr/local/bin/moq-relay".into()),
        ];
        candidates.into_iter().flatten().find(|p| p.is_file())
    }

    /// Start `binary` on a free loopback port, open to `room`, keeping its
    /// certificate in `state_dir`.
    pub async fn start(binary: &Path, state_dir: &Path, room: &str) -> anyhow::Result<Self> {
        let identity = crate::transport::tls::Identity::load_or_generate(
            state_dir,
            &["localhost".into(), "127.0.0.1".into()],
        )?;
        // Bound, released, then bound by moq-relay: it cannot tell us a port it chose.
        let port = std::net::UdpSocket::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut child = tokio::process::Command::new(binary)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--listen-tls-cert")
            .arg(state_dir.join("cert.pem"))
            .arg("--listen-tls-key")
            .arg(state_dir.join("key.pem"))
            .arg("--auth-public")
            .arg(format!("{room}/**"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", binary.display()))?;
        // Give it a moment to bind (the clients retry anyway), and see it did not quit.
        tokio::time::sleep(Duration::from_millis(500)).await;
        if child.try_wait()?.is_some() {
            let output = child.wait_with_output().await?;
            anyhow::bail!(
                "{} quit at start ({}): {}",
                binary.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            state_dir: state_dir.to_path_buf(),
            fingerprint: identity.fingerprint(),
            room: room.into(),
            child,
        })
    }

    /// A config for a client of the room that dials `via`, pinned, without a token.
    pub fn client_config(&self, via: SocketAddr) -> Config {
        client_config(&self.state_dir, via, &self.fingerprint, &self.room, None)
    }

    /// Stop it; what it printed, for a failing test or run to show.
    pub async fn stop(mut self) -> String {
        let _ = self.child.start_kill();
        match self.child.wait_with_output().await {
            Ok(output) => String::from_utf8_lossy(&output.stderr).into_owned(),
            Err(e) => format!("(no output: {e})"),
        }
    }
}

/// A client of `room` dialling `via`, pinned to `fingerprint`, with quick reconnects.
fn client_config(
    state_dir: &Path,
    via: SocketAddr,
    fingerprint: &str,
    room: &str,
    token: Option<String>,
) -> Config {
    let mut c = Config::default();
    c.link.relay = Some(via.to_string());
    c.link.fingerprint = Some(fingerprint.into());
    c.link.room = room.into();
    c.link.token = token;
    c.link.max_backoff_secs = 1;
    // Each client's own state (outbox, admin password) beside the relay's, never the
    // user's real state directory.
    c.classroom.state_dir = Some(state_dir.join(format!("client-{}", rand::random::<u32>())));
    c
}
