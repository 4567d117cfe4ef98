//! The patched quinn-proto (vendor/quinn-proto, see Cargo.toml): a stream whose
//! priority rises while its data waits is sent at the new priority.
//!
//! This is what a relay does to a video group after a bandwidth drop: moq-lite ranks
//! the newest group first, but the rank it had when its data was queued was low (a
//! backlog of sound ranked above it), and the rank rose as the sound drained. Stock
//! quinn-proto kept the stream's place in its send queue at the old priority, so older
//! groups, re-queued at their current priority after every packet, went first until
//! they were done: the keyframe the classroom waited for came a second or two late.
//!
//! Real quinn endpoints on loopback; the sender's congestion window is two packets, so
//! its send queue, not the loopback, decides the order in which the data leaves.

use std::{
    any::Any,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use classbox::transport::tls;
use quinn::congestion::{Controller, ControllerFactory};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

/// Room for the handshake, then a window of two packets: a slow, steady sender.
#[derive(Debug, Clone)]
struct TwoPackets {
    mtu: u64,
    acked: u64,
}

/// Acknowledged bytes before the window shrinks to one packet (the handshake needs
/// several packets in flight).
const HANDSHAKE_BYTES: u64 = 16_000;

impl Controller for TwoPackets {
    fn on_ack(
        &mut self,
        _: Instant,
        _: Instant,
        bytes: u64,
        _: bool,
        _: &quinn_proto::RttEstimator,
    ) {
        self.acked += bytes;
    }
    fn on_congestion_event(&mut self, _: Instant, _: Instant, _: bool, _: u64) {}
    fn on_mtu_update(&mut self, mtu: u16) {
        self.mtu = u64::from(mtu);
    }
    fn window(&self) -> u64 {
        if self.acked < HANDSHAKE_BYTES {
            HANDSHAKE_BYTES
        } else {
            // Two: with one, quinn sent nothing more once the handshake was done.
            2 * self.mtu
        }
    }
    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(self.clone())
    }
    fn initial_window(&self) -> u64 {
        HANDSHAKE_BYTES
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

#[derive(Debug)]
struct TwoPacketsFactory;

impl ControllerFactory for TwoPacketsFactory {
    fn build(self: Arc<Self>, _now: Instant, mtu: u16) -> Box<dyn Controller> {
        Box::new(TwoPackets {
            mtu: u64::from(mtu),
            acked: 0,
        })
    }
}

const OLD_BYTES: usize = 1_000_000;
const NEW_BYTES: usize = 6_000;

#[tokio::test]
async fn a_stream_whose_priority_rises_is_sent_before_older_ones() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let identity = tls::Identity {
        chain: vec![cert.cert.der().clone()],
        key: rustls::pki_types::PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()).into(),
    };
    let fingerprint = identity.fingerprint();

    let mut transport = quinn::TransportConfig::default();
    transport.congestion_controller_factory(Arc::new(TwoPacketsFactory));
    let transport = Arc::new(transport);

    let crypto = tls::server_config(identity, &["test"]).unwrap();
    let mut server_config =
        quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(crypto).unwrap()));
    server_config.transport_config(transport.clone());
    let server = quinn::Endpoint::server(server_config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let server_addr: SocketAddr = server.local_addr().unwrap();

    let fp = classbox::config::parse_fingerprint(&fingerprint).unwrap();
    let crypto = tls::client_config(&tls::Trust::Pinned(fp), &["test"]).unwrap();
    let mut client_config =
        quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(crypto).unwrap()));
    client_config.transport_config(transport);
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    client.set_default_client_config(client_config);

    let sender = tokio::spawn(async move {
        let conn = server.accept().await.unwrap().await.unwrap();
        // An older group: queued first, at a middling priority.
        let mut old = conn.open_uni().await.unwrap();
        old.set_priority(10).unwrap();
        old.write_all(&[b'o'; OLD_BYTES]).await.unwrap();
        // A newer one, queued while something else ranked above it...
        let mut new = conn.open_uni().await.unwrap();
        new.set_priority(5).unwrap();
        new.write_all(&[b'n'; NEW_BYTES]).await.unwrap();
        // ...which then drained: it now ranks first.
        new.set_priority(20).unwrap();
        old.finish().unwrap();
        new.finish().unwrap();
        // Keep the connection until the client has read everything.
        conn.closed().await;
    });

    let conn = client
        .connect(server_addr, "localhost")
        .unwrap()
        .await
        .unwrap();
    // Streams are accepted in the order they were opened: the older one first.
    let mut old = conn.accept_uni().await.unwrap();
    let mut new = conn.accept_uni().await.unwrap();
    let old_received = Arc::new(AtomicUsize::new(0));
    let counted = old_received.clone();
    let old_reader = tokio::spawn(async move {
        while let Ok(Some(chunk)) = old.read_chunk(usize::MAX, true).await {
            assert!(chunk.bytes.iter().all(|&b| b == b'o'));
            counted.fetch_add(chunk.bytes.len(), Ordering::SeqCst);
        }
    });
    let data = tokio::time::timeout(Duration::from_secs(120), new.read_to_end(NEW_BYTES))
        .await
        .expect("the raised stream arrives")
        .unwrap();
    let old_by_then = old_received.load(Ordering::SeqCst);
    conn.close(0u32.into(), b"done");
    old_reader.abort();
    let _ = sender.await;

    assert_eq!(data, vec![b'n'; NEW_BYTES]);
    // What the older stream got out before the other was queued, and its share of
    // the packets while the two were queued together (none, with priorities).
    assert!(
        old_by_then < OLD_BYTES / 4,
        "the raised stream waited for the older one: {old_by_then} of its {OLD_BYTES} bytes came first"
    );
}
