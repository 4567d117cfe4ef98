//! One relay connection: handshake, token check, room-scoped origins, serve.

use moq_net::{Pattern, Patterns, origin};

use crate::{
    auth::{TokenError, TokenKey, unix_now},
    config::validate_room,
    transport::close,
};

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("QUIC handshake failed: {0}")]
    Handshake(#[from] quinn::ConnectionError),
    #[error("moq-lite setup failed: {0}")]
    Setup(moq_net::Error),
    #[error("token refused: {0}")]
    Token(#[from] TokenError),
    #[error("bad request path: {0}")]
    Path(String),
    #[error("session ended: {0}")]
    Session(moq_net::Error),
}

impl RelayError {
    /// The client sent something wrong (as opposed to a link that went away).
    pub fn is_client_fault(&self) -> bool {
        matches!(
            self,
            RelayError::Setup(_) | RelayError::Token(_) | RelayError::Path(_)
        )
    }
}

pub(super) struct Connection {
    pub id: u64,
    pub origin: origin::Producer,
    pub key: TokenKey,
}

impl Connection {
    pub async fn serve(self, incoming: quinn::Incoming) -> Result<(), RelayError> {
        // An unknown ALPN fails here, in the TLS handshake (no_application_protocol).
        let conn = incoming.await?;
        let transport = crate::transport::session::PeerClose::raw(conn.clone());
        let now = tokio::time::Instant::now().into_std();
        let handshake = match tokio::time::timeout(
            std::time::Duration::from_secs(5),
            moq_net::Server::new().accept_request(now, transport),
        )
        .await
        {
            Ok(Ok(handshake)) => handshake,
            Ok(Err(e)) => {
                conn.close(
                    close::PROTOCOL.into(),
                    format!("bad moq-lite setup: {e}").as_bytes(),
                );
                return Err(RelayError::Setup(e));
            }
            Err(_) => {
                conn.close(close::PROTOCOL.into(), b"moq-lite setup timed out");
                return Err(RelayError::Setup(moq_net::Error::Timeout));
            }
        };

        let (room, token) = match parse_path(handshake.path()) {
            Ok(parts) => parts,
            Err(e) => {
                conn.close(close::UNAUTHORIZED.into(), e.to_string().as_bytes());
                return Err(e);
            }
        };
        let claims = match token
            .ok_or(TokenError::Missing)
            .and_then(|t| self.key.verify(&t, &room, unix_now()))
        {
            Ok(claims) => claims,
            Err(e) => {
                conn.close(close::UNAUTHORIZED.into(), e.to_string().as_bytes());
                return Err(e.into());
            }
        };
        tracing::info!(%room, put = ?claims.put, get = ?claims.get, "admitted");

        // NOTE: publish and subscribe look swapped because we are the relay: we publish
        // what the client may subscribe to, and subscribe to what it may publish.
        let scoped = |prefixes: &[String]| -> Patterns {
            prefixes
                .iter()
                .filter_map(|p| Pattern::subtree(p.trim_matches('/')).ok())
                .collect()
        };
        let room_origin = self
            .origin
            .scope(room.as_str(), &Patterns::from(Pattern::all()))
            .map_err(RelayError::Setup)?;
        let client_reads = room_origin
            .consume()
            .scope("", &scoped(&claims.get))
            .map_err(RelayError::Setup)?;
        let client_writes = room_origin
            .scope("", &scoped(&claims.put))
            .map_err(RelayError::Setup)?;

        let (session, driver) = handshake
            .with_publisher(client_reads)
            .with_subscriber(client_writes)
            .ok()
            .await
            .map_err(RelayError::Setup)?;
        tracing::debug!(id = self.id, version = %session.version(), "negotiated");
        let err = moq_net::time::run(driver).await;
        drop(session);
        match err {
            moq_net::Error::Closed => Ok(()),
            // A protocol violation mid-session (garbage, a truncated stream): tell the
            // client why before the connection goes.
            e => {
                conn.close(
                    close::PROTOCOL.into(),
                    format!("protocol error: {e}").as_bytes(),
                );
                Err(RelayError::Session(e))
            }
        }
    }
}

/// Split the SETUP path `room?jwt=token` (a leading `/` is allowed).
fn parse_path(path: &str) -> Result<(String, Option<String>), RelayError> {
    let path = path.trim_start_matches('/');
    let (room, query) = path.split_once('?').unwrap_or((path, ""));
    let room = room.trim_end_matches('/').to_string();
    validate_room(&room).map_err(|why| RelayError::Path(format!("room `{room}`: {why}")))?;
    let token = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("jwt="))
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    Ok((room, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            parse_path("/maths?jwt=abc").unwrap(),
            ("maths".into(), Some("abc".into()))
        );
        assert_eq!(parse_path("maths").unwrap(), ("maths".into(), None));
        assert_eq!(
            parse_path("maths?x=1&jwt=").unwrap(),
            ("maths".into(), None)
        );
        assert!(parse_path("../etc?jwt=a").is_err());
    }
}
