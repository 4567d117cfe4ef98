//! QUIC transport (quinn + rustls) speaking moq-lite through the `moq-net` crate.
//!
//! In: [`Frame`](crate::frame::Frame)s from a capture stage. Out: the same frames at the
//! other end of a relay. One moq-lite group per GOP (video) or per packet (audio), each
//! on its own unidirectional QUIC stream, so a lost packet never blocks a newer group;
//! audio outranks video; groups older than the latency budget are skipped.
//! Never imports GStreamer.

pub mod catalog;
pub mod congestion;
pub mod dispersion;
pub mod endpoint;
pub mod link;
pub mod lipsync;
pub mod playout;
pub mod publish;
pub mod report;
pub mod session;
pub mod subscribe;
pub mod tls;

/// The broadcast (relative to the room) the teacher publishes the lesson as.
pub const TEACHER_BROADCAST: &str = "teacher";
/// The prefix (relative to the room) classroom boxes publish their room feeds under.
pub const CLASSROOM_BROADCAST: &str = "classroom";

/// moq-lite ALPNs our clients offer, newest first. Lite-05 and newer carry the
/// request path (room and token) in SETUP, which raw QUIC needs.
pub const CLIENT_ALPNS: &[&str] = &["moq-lite-06", "moq-lite-05"];

/// QUIC application close codes our relay uses, so a client can tell why it was refused.
pub mod close {
    /// The token was missing, malformed, expired, for another room or badly signed.
    pub const UNAUTHORIZED: u32 = 0x401;
    /// A protocol violation (garbage or oversized control message, truncated stream).
    pub const PROTOCOL: u32 = 0x400;
    /// The relay is at its connection limit.
    pub const BUSY: u32 = 0x503;
    /// The relay is shutting down.
    pub const SHUTDOWN: u32 = 0;
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot resolve relay address {addr}: {reason}")]
    Resolve { addr: String, reason: String },
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("cannot open a UDP socket: {0}")]
    Socket(#[from] std::io::Error),
    #[error("cannot reach the relay: {0}")]
    Connect(String),
    #[error("the relay refused this client: {0}")]
    Refused(String),
    #[error("moq session error: {0}")]
    Moq(#[from] moq_net::Error),
    #[error("bad catalog: {0}")]
    Catalog(String),
}

impl TransportError {
    /// Whether trying again later can help. A refused token does not fix itself.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            TransportError::Refused(_) | TransportError::Tls(_) | TransportError::Catalog(_)
        )
    }
}
