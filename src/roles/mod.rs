//! Wiring only: each role reads as its data flow in DESIGN.md. `media` and
//! `transport` never meet anywhere else.

pub mod bench;
pub mod classroom;
pub mod demo;
pub mod doctor;
pub mod loopback;
pub mod outbox;
pub mod relay;
pub mod return_feed;
pub mod sender;
pub mod teacher;

use std::time::Duration;

use crate::{
    config::{Config, ConfigError},
    transport::{link::LinkSettings, tls::Trust},
};

/// The link settings of a teacher or a box, from config. `link.relay` is required.
pub fn link_settings(config: &Config) -> Result<LinkSettings, ConfigError> {
    let relay = config.link.relay.clone().ok_or_else(|| ConfigError::Key {
        key: "link.relay".into(),
        origin: "config".into(),
        message: "required: the relay's host:port (flag --relay)".into(),
    })?;
    let trust = match &config.link.fingerprint {
        Some(fp) => Trust::Pinned(crate::config::parse_fingerprint(fp).expect("validated at load")),
        None => Trust::SystemRoots,
    };
    Ok(LinkSettings {
        relay,
        trust,
        room: config.link.room.clone(),
        token: config.token()?,
        max_backoff: Duration::from_secs(config.link.max_backoff_secs),
    })
}

/// Refuse, before connecting, a token that cannot do what `role` needs.
pub fn check_token_role(
    settings: &LinkSettings,
    role: crate::auth::Role,
) -> Result<(), ConfigError> {
    match &settings.token {
        Some(token) => crate::auth::check_role(token, role).map_err(|message| ConfigError::Key {
            key: "link.token".into(),
            origin: "config".into(),
            message,
        }),
        None => Ok(()),
    }
}

/// A moq origin whose driver runs on the ambient runtime until the origin is dropped.
pub fn spawn_origin() -> moq_net::origin::Producer {
    let (origin, driver) = moq_net::origin::Producer::new(moq_net::origin::Config::default());
    tokio::spawn(moq_net::time::run(driver));
    origin
}
