//! quinn endpoints: the relay's listening one and the dialling one of boxes and teachers.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

use super::{
    TransportError,
    dispersion::{CapacityMeter, RecordingSocket},
    tls,
};

/// Keep-alives keep NAT bindings open; the idle timeout notices a dead link quickly.
fn transport_config() -> Arc<quinn::TransportConfig> {
    let mut config = quinn::TransportConfig::default();
    config.keep_alive_interval(Some(Duration::from_secs(2)));
    config.max_idle_timeout(Some(Duration::from_secs(10).try_into().expect("10 s fits")));
    // Groups are streams: allow plenty in flight (audio opens ~50 per second).
    config.max_concurrent_uni_streams(1024u32.into());
    config.max_concurrent_bidi_streams(256u32.into());
    // Latency-bounded, not loss-based: see congestion.rs. (quinn's Cubic filled the
    // emulated school link's buffer, 1.7 s at 300 kbit/s; its BBR kept a 1-2 s backlog
    // after a bandwidth drop. Both measured with classbox bench, step trace.)
    config.congestion_controller_factory(Arc::new(
        super::congestion::LatencyBoundedConfig::default(),
    ));
    // Find a lost packet sooner. At 300 kbit/s packets come 40 ms apart, and a lost
    // one holds the rest of its group until its copy arrives: with the defaults that
    // was the peer's 25 ms ACK delay, three later packets (120 ms) and a round trip,
    // 300-400 ms in all, and most of the small rungs' freezes. Two later packets mark
    // it lost (a media path reorders rarely, and a needless copy costs one packet,
    // since the congestion controller ignores isolated losses); the peer acknowledges
    // within 5 ms, and at once when a packet is missing.
    config.packet_threshold(2);
    let mut acks = quinn::AckFrequencyConfig::default();
    acks.max_ack_delay(Some(Duration::from_millis(5)))
        .reordering_threshold(1u32.into());
    config.ack_frequency_config(Some(acks));
    Arc::new(config)
}

pub fn server(
    addr: SocketAddr,
    identity: tls::Identity,
    alpns: &[&str],
) -> Result<quinn::Endpoint, TransportError> {
    let crypto = tls::server_config(identity, alpns)?;
    let crypto =
        QuicServerConfig::try_from(crypto).map_err(|e| TransportError::Tls(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport_config());
    Ok(quinn::Endpoint::server(config, addr)?)
}

pub fn client(
    trust: &tls::Trust,
    alpns: &[&str],
    bind: SocketAddr,
) -> Result<quinn::Endpoint, TransportError> {
    let mut endpoint = quinn::Endpoint::client(bind)?;
    endpoint.set_default_client_config(client_config(trust, alpns)?);
    Ok(endpoint)
}

/// A dialling endpoint whose socket notes when each datagram arrives, for the
/// link's capacity (see [`dispersion`](super::dispersion)).
pub fn recording_client(
    trust: &tls::Trust,
    alpns: &[&str],
    bind: SocketAddr,
    meter: Arc<CapacityMeter>,
) -> Result<quinn::Endpoint, TransportError> {
    let runtime = quinn::default_runtime()
        .ok_or_else(|| TransportError::Connect("no async runtime for QUIC".into()))?;
    let socket = runtime.wrap_udp_socket(std::net::UdpSocket::bind(bind)?)?;
    let socket = Arc::new(RecordingSocket::new(socket, meter));
    let mut endpoint = quinn::Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        None,
        socket,
        runtime,
    )?;
    endpoint.set_default_client_config(client_config(trust, alpns)?);
    Ok(endpoint)
}

fn client_config(
    trust: &tls::Trust,
    alpns: &[&str],
) -> Result<quinn::ClientConfig, TransportError> {
    let crypto = tls::client_config(trust, alpns)?;
    let crypto =
        QuicClientConfig::try_from(crypto).map_err(|e| TransportError::Tls(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport_config());
    Ok(config)
}
