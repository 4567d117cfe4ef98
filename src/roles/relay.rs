//! Relay: accept boxes and teachers, check tokens, fan each room out.

use tokio_util::sync::CancellationToken;

use crate::{
    auth::{TokenKey, parse_ttl},
    cli::RelayAction,
    config::{Config, validate_room},
    relay::{KEY_FILE, Relay, RelaySettings},
    transport::tls,
};

pub fn state_dir(config: &Config) -> std::path::PathBuf {
    crate::state::dir(config.relay.state_dir.as_deref(), "relay")
}

/// `classbox relay token|fingerprint`: admin commands that print and exit.
pub fn admin(config: &Config, action: &RelayAction) -> anyhow::Result<()> {
    let dir = state_dir(config);
    match action {
        RelayAction::Token { room, role, ttl } => {
            validate_room(room).map_err(|e| anyhow::anyhow!("--room: {e}"))?;
            let ttl = parse_ttl(ttl).map_err(|e| anyhow::anyhow!("--ttl: {e}"))?;
            let key = TokenKey::load_or_create(&dir.join(KEY_FILE))?;
            println!("{}", key.issue(room, *role, ttl));
        }
        RelayAction::Fingerprint => {
            let identity = match (&config.relay.tls_cert, &config.relay.tls_key) {
                (Some(c), Some(k)) => tls::Identity::load(c, k)?,
                _ => tls::Identity::load_or_generate(&dir, &config.relay.names)?,
            };
            println!("sha256:{}", identity.fingerprint());
        }
    }
    Ok(())
}

pub async fn run(config: &Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let dir = state_dir(config);
    let relay = Relay::bind(RelaySettings::from_state_dir(&dir, &config.relay)?)?;
    tracing::info!(
        listen = %relay.local_addr()?,
        state_dir = %dir.display(),
        fingerprint = %format!("sha256:{}", relay.fingerprint()),
        "relay listening; clients pin this fingerprint (link.fingerprint)"
    );
    let addr = relay.local_addr()?;
    let mut serving = tokio::spawn(relay.run(shutdown.clone()));
    crate::systemd::ready(&format!("relay listening on {addr}"));
    // The watchdog is pinged from here: a runtime that hangs stops pinging.
    let mut watchdog = crate::systemd::Watchdog::new();
    loop {
        tokio::select! {
            _ = &mut serving => break,
            _ = watchdog.tick() => watchdog.ping(),
        }
    }
    crate::systemd::stopping();
    Ok(())
}
