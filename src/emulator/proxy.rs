//! The emulator on real sockets: a UDP relay on loopback between one client and one
//! server, each direction shaped by its own [`Direction`].

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{net::UdpSocket, sync::Mutex, time::Instant};
use tokio_util::sync::CancellationToken;

use super::{Direction, DirectionStats, Impairments, Trace};

/// How to shape each direction.
#[derive(Debug, Clone)]
pub struct LinkProfile {
    /// Towards the server (e.g. the school's uplink).
    pub up: (Trace, Impairments),
    /// Towards the client (e.g. the lesson coming down to the school).
    pub down: (Trace, Impairments),
}

/// A running emulated link. Clients send to [`LinkEmulator::addr`].
pub struct LinkEmulator {
    addr: SocketAddr,
    stats: Arc<Mutex<(DirectionStats, DirectionStats)>>,
    started: Instant,
    task: tokio::task::JoinHandle<()>,
}

impl LinkEmulator {
    /// Listen on `127.0.0.1:0` and forward to `server`.
    pub async fn start(
        server: SocketAddr,
        profile: LinkProfile,
        seed: u64,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let front = UdpSocket::bind("127.0.0.1:0").await?;
        let back = UdpSocket::bind("127.0.0.1:0").await?;
        back.connect(server).await?;
        let addr = front.local_addr()?;
        let stats = Arc::new(Mutex::new(Default::default()));
        let started = Instant::now();
        let task = tokio::spawn(run(
            front,
            back,
            Direction::new(profile.up.0, profile.up.1, seed),
            Direction::new(profile.down.0, profile.down.1, seed.wrapping_add(1)),
            started,
            stats.clone(),
            shutdown,
        ));
        Ok(Self {
            addr,
            stats,
            started,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// When the emulation (and so the trace) started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// (up, down) counters so far.
    pub async fn stats(&self) -> (DirectionStats, DirectionStats) {
        *self.stats.lock().await
    }

    pub async fn join(self) {
        let _ = self.task.await;
    }
}

type Datagram = Vec<u8>;

async fn run(
    front: UdpSocket,
    back: UdpSocket,
    mut up: Direction<Datagram>,
    mut down: Direction<Datagram>,
    started: Instant,
    stats: Arc<Mutex<(DirectionStats, DirectionStats)>>,
    shutdown: CancellationToken,
) {
    let mut client: Option<SocketAddr> = None;
    let mut buf_up = vec![0u8; 65_536];
    let mut buf_down = vec![0u8; 65_536];
    let mut report = tokio::time::interval(Duration::from_millis(200));
    loop {
        let next = [up.next_event(), down.next_event()]
            .into_iter()
            .flatten()
            .min();
        let wake = next
            .map(|t| started + t)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = front.recv_from(&mut buf_up) => {
                let Ok((n, from)) = r else { continue };
                // The first sender is the client; a reconnect from a new port takes over.
                client = Some(from);
                let _ = up.enqueue(started.elapsed(), n, buf_up[..n].to_vec());
            }
            r = back.recv(&mut buf_down) => {
                let Ok(n) = r else { continue };
                let _ = down.enqueue(started.elapsed(), n, buf_down[..n].to_vec());
            }
            _ = tokio::time::sleep_until(wake) => {}
            _ = report.tick() => {
                *stats.lock().await = (up.stats(), down.stats());
            }
        }
        let now = started.elapsed();
        for packet in up.poll_deliver(now) {
            let _ = back.send(&packet).await;
        }
        if let Some(client) = client {
            for packet in down.poll_deliver(now) {
                let _ = front.send_to(&packet, client).await;
            }
        }
    }
    *stats.lock().await = (up.stats(), down.stats());
}
