//! The QUIC session moq-lite runs on, keeping the peer's reason for a close.
//!
//! When the relay refuses a box it closes the connection with the reason ("the token
//! expired 3 s ago"), and that reason is what the page and the log should show.
//! moq-lite closes its session when a stream fails, and the peer's close fails them
//! all; quinn then replaces the peer's reason with its own "closed locally", and
//! web-transport-quinn reports that for every later error too. Which one the box saw
//! depended on which task woke first (a refusal test failed on it once in CI).
//!
//! [`PeerClose`] delegates everything to [`web_transport_quinn::Session`] but does not
//! close a connection that is already closed: the trait asks `close` to be
//! idempotent, and closing a closed connection achieves nothing but losing why.

use std::task::{Context, Poll};

use bytes::Bytes;
use moq_net::web_transport_trait::{Stats, poll};
use web_transport_quinn::{RecvStream, SendStream, Session, SessionError};

#[derive(Clone)]
pub struct PeerClose(Session);

impl PeerClose {
    pub fn raw(conn: quinn::Connection) -> Self {
        Self(Session::raw(conn))
    }
}

impl poll::Session for PeerClose {
    type SendStream = SendStream;
    type RecvStream = RecvStream;
    type Error = SessionError;

    fn poll_accept_uni(&mut self, cx: &mut Context<'_>) -> Poll<Result<RecvStream, SessionError>> {
        self.0.poll_accept_uni(cx)
    }

    fn poll_accept_bi(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(SendStream, RecvStream), SessionError>> {
        self.0.poll_accept_bi(cx)
    }

    fn poll_open_uni(&mut self, cx: &mut Context<'_>) -> Poll<Result<SendStream, SessionError>> {
        self.0.poll_open_uni(cx)
    }

    fn poll_open_bi(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(SendStream, RecvStream), SessionError>> {
        self.0.poll_open_bi(cx)
    }

    fn poll_send_datagram(
        &mut self,
        cx: &mut Context<'_>,
        payload: &[u8],
    ) -> Poll<Result<(), SessionError>> {
        self.0.poll_send_datagram(cx, payload)
    }

    fn poll_recv_datagram(&mut self, cx: &mut Context<'_>) -> Poll<Result<Bytes, SessionError>> {
        self.0.poll_recv_datagram(cx)
    }

    fn max_datagram_size(&self) -> usize {
        poll::Session::max_datagram_size(&self.0)
    }

    fn protocol(&self) -> Option<&str> {
        poll::Session::protocol(&self.0)
    }

    fn close(&mut self, code: u32, reason: &str) {
        if self.0.close_reason().is_none() {
            poll::Session::close(&mut self.0, code, reason);
        }
    }

    fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<SessionError> {
        self.0.poll_closed(cx)
    }

    fn stats(&self) -> impl Stats {
        poll::Session::stats(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{endpoint, tls};

    /// A connected pair on loopback: (server's end, client's end).
    async fn pair() -> (quinn::Connection, quinn::Connection) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let identity = tls::Identity {
            chain: vec![cert.cert.der().clone()],
            key: rustls::pki_types::PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()).into(),
        };
        let fp = crate::config::parse_fingerprint(&identity.fingerprint()).unwrap();
        let server = endpoint::server("127.0.0.1:0".parse().unwrap(), identity, &["t"]).unwrap();
        let client = endpoint::client(
            &tls::Trust::Pinned(fp),
            &["t"],
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap();
        let addr = server.local_addr().unwrap();
        let (accepted, connected) = tokio::join!(
            async { server.accept().await.unwrap().await.unwrap() },
            async { client.connect(addr, "localhost").unwrap().await.unwrap() },
        );
        (accepted, connected)
    }

    /// The reason the client's end reports once the server has closed it, after a
    /// local close of `session` as moq-lite makes when its streams fail.
    async fn reason_after_local_close<S: poll::Session>(
        make: impl FnOnce(quinn::Connection) -> S,
    ) -> quinn::ConnectionError {
        let (server, client) = pair().await;
        let mut session = make(client.clone());
        server.close(1025u32.into(), b"the token expired 3 s ago");
        client.closed().await;
        session.close(0, "a stream failed");
        client.close_reason().unwrap()
    }

    #[tokio::test]
    async fn the_peers_reason_survives_a_later_local_close() {
        match reason_after_local_close(PeerClose::raw).await {
            quinn::ConnectionError::ApplicationClosed(close) => {
                assert_eq!(close.error_code, 1025u32.into());
                assert_eq!(&close.reason[..], b"the token expired 3 s ago");
            }
            other => panic!("{other}"),
        }
        // What the plain session does, and why PeerClose exists.
        assert!(matches!(
            reason_after_local_close(Session::raw).await,
            quinn::ConnectionError::LocallyClosed
        ));
    }

    #[tokio::test]
    async fn an_open_connection_is_closed_with_our_reason() {
        let (server, client) = pair().await;
        let mut session = PeerClose::raw(client);
        poll::Session::close(&mut session, 7, "bye");
        match server.closed().await {
            quinn::ConnectionError::ApplicationClosed(close) => {
                assert_eq!(close.error_code, 7u32.into());
                assert_eq!(&close.reason[..], b"bye");
            }
            other => panic!("{other}"),
        }
    }
}
