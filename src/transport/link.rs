//! The dial-out link to the relay: connect, stay connected, reconnect with backoff.
//!
//! Schools sit behind NAT, so boxes (and teachers) always dial out. In: relay address,
//! trust, room and token, and a local moq origin to publish from and subscribe into.
//! Out: a live moq-lite session, its state in [`LessonStats`], and reconnects after any
//! link loss without operator action. The backoff is sans-IO ([`crate::backoff`]).

use crate::backoff::Backoff;
use std::{net::SocketAddr, sync::Arc, time::Duration};

use moq_net::origin;
use tokio_util::sync::CancellationToken;

use super::{CLIENT_ALPNS, TransportError, close, dispersion::CapacityMeter, endpoint, tls};
use crate::stats::{LessonStats, LinkState};

#[derive(Clone, Debug)]
pub struct LinkSettings {
    /// `host:port` of the relay.
    pub relay: String,
    pub trust: tls::Trust,
    pub room: String,
    pub token: Option<String>,
    pub max_backoff: Duration,
}

/// A connected moq session and the QUIC connection under it (for path statistics).
pub struct Connected {
    pub session: moq_net::Session,
    pub conn: quinn::Connection,
}

pub struct Link {
    settings: LinkSettings,
    endpoint: quinn::Endpoint,
    /// What the link to the relay can carry, from its packets' arrival times.
    capacity: Arc<CapacityMeter>,
}

impl Link {
    pub fn new(settings: LinkSettings) -> Result<Self, TransportError> {
        let bind: SocketAddr = "[::]:0".parse().expect("valid");
        // Fall back to IPv4-only hosts (some boxes have IPv6 disabled).
        let capacity = Arc::new(CapacityMeter::default());
        let client = |bind| {
            endpoint::recording_client(&settings.trust, CLIENT_ALPNS, bind, capacity.clone())
        };
        let endpoint = client(bind).or_else(|_| client("0.0.0.0:0".parse().expect("valid")))?;
        Ok(Self {
            settings,
            endpoint,
            capacity,
        })
    }

    pub fn settings(&self) -> &LinkSettings {
        &self.settings
    }

    /// The moq-lite SETUP path: the room, and the token as moq-relay's `jwt` query.
    fn setup_path(&self) -> String {
        match &self.settings.token {
            Some(token) => format!("{}?jwt={}", self.settings.room, token),
            None => self.settings.room.clone(),
        }
    }

    /// Connect once: resolve, QUIC + TLS handshake, moq-lite SETUP.
    pub async fn connect(&self, origin: &origin::Producer) -> Result<Connected, TransportError> {
        let (host, port) =
            crate::config::parse_host_port(&self.settings.relay).map_err(|reason| {
                TransportError::Resolve {
                    addr: self.settings.relay.clone(),
                    reason,
                }
            })?;
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| TransportError::Resolve {
                addr: self.settings.relay.clone(),
                reason: e.to_string(),
            })?
            .next()
            .ok_or_else(|| TransportError::Resolve {
                addr: self.settings.relay.clone(),
                reason: "no addresses".into(),
            })?;
        let conn = self
            .endpoint
            .connect(addr, &host)
            .map_err(|e| TransportError::Connect(e.to_string()))?
            .await
            .map_err(|e| connection_error(&e))?;

        let transport = super::session::PeerClose::raw(conn.clone());
        let client = moq_net::Client::new()
            .with_origin(origin.clone())
            .with_path(self.setup_path());
        let now = tokio::time::Instant::now().into_std();
        let result =
            tokio::time::timeout(Duration::from_secs(10), client.connect(now, transport)).await;
        let (session, driver) = match result {
            Ok(Ok(pair)) => pair,
            // The relay closes the QUIC connection with a reason when it refuses us;
            // that reason is more useful than the moq error it caused.
            Ok(Err(e)) => return Err(why_closed(&conn, e)),
            Err(_) => {
                conn.close(close::PROTOCOL.into(), b"setup timed out");
                return Err(TransportError::Connect(
                    "moq-lite setup timed out after 10 s".into(),
                ));
            }
        };
        tokio::spawn(moq_net::time::run(driver));
        Ok(Connected { session, conn })
    }

    /// Connect, then wait briefly for the relay to refuse us. moq-lite's client
    /// handshake completes before the relay has checked the token, so a refusal
    /// arrives as a close just after; `connect` alone cannot report it.
    pub async fn probe(&self, origin: &origin::Producer) -> Result<Connected, TransportError> {
        let connected = self.connect(origin).await?;
        let wait = (connected.conn.rtt() * 4).max(Duration::from_millis(500));
        tokio::select! {
            err = connected.session.closed() => Err(why_closed(&connected.conn, err)),
            _ = tokio::time::sleep(wait) => Ok(connected),
        }
    }

    /// Stay connected until `shutdown`; every loss is followed by a reconnect.
    /// Returns early only when the relay refuses us and `stop_when_refused` is set.
    pub async fn run(
        self,
        origin: origin::Producer,
        stats: Arc<LessonStats>,
        stop_when_refused: bool,
        shutdown: CancellationToken,
    ) -> Result<(), TransportError> {
        let mut backoff = Backoff::new(Duration::from_millis(250), self.settings.max_backoff);
        loop {
            stats.set_link(LinkState::Connecting);
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = self.connect(&origin) => r,
            };
            match attempt {
                Ok(connected) => {
                    tracing::info!(relay = %self.settings.relay, room = %self.settings.room, "connected to relay");
                    backoff.reset();
                    let reason = self.serve(&connected, &stats, &shutdown).await;
                    if shutdown.is_cancelled() {
                        let _ = connected.session.close().await;
                        connected
                            .conn
                            .close(close::SHUTDOWN.into(), b"shutting down");
                        break;
                    }
                    tracing::warn!(relay = %self.settings.relay, %reason, "link to relay lost; reconnecting");
                    if let TransportError::Refused(_) = reason
                        && stop_when_refused
                    {
                        stats.set_link(LinkState::Refused(reason.to_string()));
                        return Err(reason);
                    }
                    stats.set_link(LinkState::Lost(reason.to_string()));
                }
                Err(e) => {
                    tracing::warn!(relay = %self.settings.relay, error = %e, "cannot connect to relay");
                    if !e.is_retryable() && stop_when_refused {
                        stats.set_link(LinkState::Refused(e.to_string()));
                        return Err(e);
                    }
                    stats.set_link(match &e {
                        TransportError::Refused(_) => LinkState::Refused(e.to_string()),
                        _ => LinkState::Lost(e.to_string()),
                    });
                }
            }
            let wait = backoff.next_delay(rand::random::<f64>());
            stats
                .reconnects
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        stats.set_link(LinkState::Stopped);
        self.endpoint
            .close(close::SHUTDOWN.into(), b"shutting down");
        let _ = tokio::time::timeout(Duration::from_millis(500), self.endpoint.wait_idle()).await;
        Ok(())
    }

    /// While connected: publish path statistics once a second; return why it ended.
    async fn serve(
        &self,
        connected: &Connected,
        stats: &LessonStats,
        shutdown: &CancellationToken,
    ) -> TransportError {
        // The receiver reports read the connection's byte counters.
        self.capacity.reset();
        stats.set_connection(Some((connected.conn.clone(), self.capacity.clone())));
        let reason = self.watch(connected, stats, shutdown).await;
        stats.set_connection(None);
        reason
    }

    async fn watch(
        &self,
        connected: &Connected,
        stats: &LessonStats,
        shutdown: &CancellationToken,
    ) -> TransportError {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let path = connected.conn.stats().path;
            stats.set_link(LinkState::Connected {
                rtt_ms: connected.conn.rtt().as_secs_f64() * 1000.0,
                cwnd_bytes: path.cwnd,
                lost_packets: path.lost_packets,
                capacity_kbps: self.capacity.kbps(),
            });
            tokio::select! {
                _ = shutdown.cancelled() => return TransportError::Connect("shutdown".into()),
                err = connected.session.closed() => return why_closed(&connected.conn, err),
                _ = tick.tick() => {}
            }
        }
    }
}

fn connection_error(e: &quinn::ConnectionError) -> TransportError {
    match e {
        quinn::ConnectionError::ApplicationClosed(close)
            if close.error_code == close::UNAUTHORIZED.into() =>
        {
            TransportError::Refused(String::from_utf8_lossy(&close.reason).into_owned())
        }
        quinn::ConnectionError::TransportError(t)
            if t.to_string().contains("no_application_protocol")
                || t.to_string().contains("fingerprint") =>
        {
            TransportError::Tls(t.to_string())
        }
        other => TransportError::Connect(other.to_string()),
    }
}

/// Why a session ended. The relay's close reason is the useful part; quinn keeps it
/// unless the transport layer above closed the connection locally first, in which
/// case it survives only in the moq error's text.
fn why_closed(conn: &quinn::Connection, err: moq_net::Error) -> TransportError {
    match conn.close_reason() {
        Some(reason @ quinn::ConnectionError::ApplicationClosed(_)) => connection_error(&reason),
        _ => refusal_in_text(&err.to_string()).unwrap_or(TransportError::Moq(err)),
    }
}

/// Find `closed by peer: <reason> (code 1025)` (our UNAUTHORIZED) in an error text.
fn refusal_in_text(text: &str) -> Option<TransportError> {
    let marker = format!(" (code {})", close::UNAUTHORIZED);
    let end = text.find(&marker)?;
    let start = text[..end]
        .find("closed by peer: ")
        .map(|i| i + "closed by peer: ".len())?;
    Some(TransportError::Refused(text[start..end].to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_reason_is_recovered_from_text() {
        let text =
            "transport: connection error: closed by peer: the token expired 3 s ago (code 1025)";
        match refusal_in_text(text) {
            Some(TransportError::Refused(reason)) => {
                assert_eq!(reason, "the token expired 3 s ago")
            }
            other => panic!("{other:?}"),
        }
        assert!(refusal_in_text("closed by peer: bye (code 0)").is_none());
    }
}
