//! The link's capacity, read from how far apart its packets arrive.
//!
//! Two packets sent back to back leave the slowest link on their way one packet's
//! time apart: 1452 bytes are 23 ms at 500 kbit/s, 6 ms at 2 Mbit/s. The relay sends
//! a picture's packets together (its window allows a burst), so two picture packets
//! arriving in a row were mostly spaced by the link itself, whatever rate the
//! pictures use: a measure of the link that needs no queue to build, unlike the
//! queueing delay the bitrate controller otherwise waits for (a classroom joining at
//! 500 kbit/s got 576 kbit/s of pictures for 2 s before its queue said so), and
//! that sees a better link at once (the step trace's rise read within a second).
//!
//! Only pairs of picture-sized packets with nothing between them count: a picture
//! of one packet pairs with the next picture's across the frame interval, which is
//! the pictures' own rate, not the link's (counting those, a 500 kbit/s link read
//! as the 200 kbit/s the target had come down to, and the target followed it down).
//! A pair the sender still spaced wider (pacing) reads lower than the link, one
//! squeezed on the way (timer jitter, a radio's aggregation) higher: the 80th
//! percentile of the last second's pairs is the estimate (483-525 kbit/s, median
//! 497, on the 500 kbit/s sample trace).
//!
//! Sans-IO: arrival times are passed in. [`RecordingSocket`] feeds it from the
//! endpoint's socket.

use std::{
    collections::VecDeque,
    fmt,
    io::{self, IoSliceMut},
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Instant,
};

use quinn::{AsyncUdpSocket, UdpPoller, udp::RecvMeta};

/// A packet at least this large carries pictures (the sound's and the acks' are
/// smaller): pairs are measured between such packets.
const FULL_BYTES: usize = 600;
/// A wider gap says the sender was idle, not how fast the link is.
const MAX_GAP_US: u64 = 250_000;
/// Pairs older than this are forgotten.
const WINDOW_US: u64 = 1_000_000;
/// Fewer pairs than this in the window give no estimate.
const MIN_PAIRS: usize = 8;
/// The estimate: this percentile of the window's pairs (see the module docs).
const PERCENTILE: f64 = 0.8;
/// Pairs this recent tell whether the link just fell (see [`Dispersion::fell_kbps`])...
const FELL_WINDOW_US: u64 = 250_000;
/// ...when there are at least this many...
const FELL_PAIRS: usize = 3;
/// ...and every one reads under this share of the estimate from the pairs before.
const FELL_SHARE: f64 = 1.0 / 3.0;

#[derive(Debug, Default)]
pub struct Dispersion {
    /// Arrival of the previous datagram, µs, if it was full.
    last_full_us: Option<u64>,
    /// (arrival µs, bits per second) of each pair.
    pairs: VecDeque<(u64, f64)>,
}

impl Dispersion {
    /// A datagram of `len` bytes arrived at `at_us`.
    pub fn on_datagram(&mut self, at_us: u64, len: usize) {
        let full = len >= FULL_BYTES;
        if full && let Some(last) = self.last_full_us {
            let gap = at_us.saturating_sub(last);
            if gap > 0 && gap <= MAX_GAP_US {
                self.pairs
                    .push_back((at_us, len as f64 * 8.0 * 1e6 / gap as f64));
            }
        }
        self.last_full_us = full.then_some(at_us);
        self.forget(at_us);
    }

    /// A read of `len` bytes in datagrams of `stride` (several at once: GRO). The
    /// kernel joins datagrams that came too close together to time apart, so a
    /// joined read pairs with nothing: its own spacing is lost, and the spacing
    /// to the read before is the sender's (on loopback a picture's packets come
    /// as one read: pairs across reads would measure the frame interval).
    pub fn on_batch(&mut self, at_us: u64, len: usize, stride: usize) {
        if len <= stride.max(1) {
            self.on_datagram(at_us, len);
        } else {
            self.last_full_us = None;
            self.forget(at_us);
        }
    }

    fn forget(&mut self, now_us: u64) {
        while self
            .pairs
            .front()
            .is_some_and(|&(t, _)| now_us.saturating_sub(t) > WINDOW_US)
        {
            self.pairs.pop_front();
        }
    }

    /// The link's capacity at `now_us`, kbit/s; `None` with too few recent pairs.
    pub fn capacity_kbps(&mut self, now_us: u64) -> Option<f64> {
        self.forget(now_us);
        if self.pairs.len() < MIN_PAIRS {
            return None;
        }
        let rates = self.pairs.iter().map(|&(_, r)| r).collect();
        Some(percentile(rates, PERCENTILE) / 1000.0)
    }

    /// The link just fell, to about this, kbit/s: the last [`FELL_WINDOW_US`]'s
    /// pairs all read under [`FELL_SHARE`] of what the pairs of the second before
    /// read. The estimate above needs most of its second's pairs to change, 0.8 s
    /// after a drop from 2 Mbit/s to 300k (by which time the relay has sent a
    /// second of the old rate into the new link); this tells within a quarter
    /// second. `None`: no drop, or too few pairs to tell.
    pub fn fell_kbps(&mut self, now_us: u64) -> Option<f64> {
        self.forget(now_us);
        let since = now_us.saturating_sub(FELL_WINDOW_US);
        let split = self.pairs.partition_point(|&(t, _)| t < since);
        let (before, recent) = self.pairs.make_contiguous().split_at(split);
        if recent.len() < FELL_PAIRS || before.len() < MIN_PAIRS {
            return None;
        }
        let was = percentile(before.iter().map(|&(_, r)| r).collect(), PERCENTILE);
        let recent: Vec<f64> = recent.iter().map(|&(_, r)| r).collect();
        let fastest = recent.iter().copied().fold(0.0, f64::max);
        (fastest < FELL_SHARE * was).then(|| percentile(recent, 0.5) / 1000.0)
    }

    /// Start again (a new connection: perhaps another path).
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// The `p`th percentile of `rates` (not empty).
fn percentile(mut rates: Vec<f64>, p: f64) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[((rates.len() - 1) as f64 * p).round() as usize]
}

/// A [`Dispersion`] on the monotonic clock, shared by the socket and the reports.
#[derive(Debug)]
pub struct CapacityMeter {
    epoch: Instant,
    dispersion: Mutex<Dispersion>,
}

impl Default for CapacityMeter {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            dispersion: Mutex::default(),
        }
    }
}

impl CapacityMeter {
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Dispersion> {
        self.dispersion.lock().expect("dispersion lock")
    }

    /// The link's capacity now, kbit/s (see [`Dispersion::capacity_kbps`]).
    pub fn kbps(&self) -> Option<f64> {
        let now = self.now_us();
        self.lock().capacity_kbps(now)
    }

    /// The link just fell, to about this, kbit/s (see [`Dispersion::fell_kbps`]).
    pub fn fell_kbps(&self) -> Option<f64> {
        let now = self.now_us();
        self.lock().fell_kbps(now)
    }

    pub fn reset(&self) {
        self.lock().reset();
    }
}

/// An endpoint's UDP socket that notes when each datagram arrives, for a
/// [`CapacityMeter`]; otherwise the runtime's own socket.
pub struct RecordingSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    meter: Arc<CapacityMeter>,
}

impl RecordingSocket {
    pub fn new(inner: Arc<dyn AsyncUdpSocket>, meter: Arc<CapacityMeter>) -> Self {
        Self { inner, meter }
    }
}

impl fmt::Debug for RecordingSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingSocket")
            .field("inner", &self.inner)
            .finish()
    }
}

impl AsyncUdpSocket for RecordingSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &quinn::udp::Transmit) -> io::Result<()> {
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let polled = self.inner.poll_recv(cx, bufs, meta);
        if let Poll::Ready(Ok(count)) = &polled {
            let at_us = self.meter.now_us();
            let mut dispersion = self.meter.lock();
            for m in &meta[..*count] {
                dispersion.on_batch(at_us, m.len, m.stride);
            }
        }
        polled
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pictures of `packets` full packets every `every_us`, and a sound packet every
    /// 20 ms, through a link of `kbps` with a queue: arrival times and sizes from
    /// `from_us` for `for_us`.
    fn through_link(
        d: &mut Dispersion,
        kbps: f64,
        packets: usize,
        every_us: u64,
        (from_us, for_us): (u64, u64),
    ) {
        let mut sent: Vec<(u64, usize)> = Vec::new();
        let mut t = from_us;
        while t < from_us + for_us {
            sent.extend((0..packets).map(|_| (t, 1452)));
            sent.push((t, 900));
            t += every_us;
        }
        let mut a = from_us;
        while a < from_us + for_us {
            sent.push((a + 7_000, 120));
            a += 20_000;
        }
        sent.sort_by_key(|&(at, _)| at);
        let mut free_us = 0u64;
        for (at, len) in sent {
            let start = at.max(free_us);
            free_us = start + (len as f64 * 8.0 / kbps * 1000.0) as u64;
            d.on_datagram(free_us, len);
        }
    }

    fn near(got: Option<f64>, want: f64) -> bool {
        got.is_some_and(|g| (g - want).abs() <= 0.05 * want)
    }

    #[test]
    fn pictures_well_under_the_link_still_read_the_link() {
        for kbps in [300.0, 500.0, 2000.0] {
            let mut d = Dispersion::default();
            // Two full packets and a partial one, 25 times a second: 670 kbit/s,
            // under 2 Mbit/s and over the others (queued there).
            through_link(&mut d, kbps, 2, 40_000, (0, 3_000_000));
            let got = d.capacity_kbps(3_000_000);
            assert!(near(got, kbps), "{kbps} kbit/s link read as {got:?}");
        }
    }

    #[test]
    fn pictures_of_one_packet_give_no_reading_rather_than_their_own_rate() {
        let mut d = Dispersion::default();
        through_link(&mut d, 2000.0, 0, 66_667, (0, 3_000_000));
        assert_eq!(d.capacity_kbps(3_000_000), None);
    }

    #[test]
    fn a_drop_is_read_within_a_second_and_nothing_is_kept_longer() {
        let mut d = Dispersion::default();
        through_link(&mut d, 2000.0, 3, 40_000, (0, 5_000_000));
        assert!(near(d.capacity_kbps(5_000_000), 2000.0));
        // One packet and a partial one, under the new link's rate (none queued long).
        through_link(&mut d, 300.0, 1, 80_000, (5_000_000, 1_000_000));
        let got = d.capacity_kbps(6_000_000);
        assert!(near(got, 300.0), "after the drop: {got:?}");
        assert_eq!(d.capacity_kbps(8_000_000), None, "two seconds of nothing");
    }

    #[test]
    fn a_drop_is_told_within_a_quarter_second() {
        let mut d = Dispersion::default();
        through_link(&mut d, 2000.0, 3, 40_000, (0, 5_000_000));
        assert_eq!(d.fell_kbps(5_000_000), None, "a steady link");
        // The old rate's packets queued at the new link's entrance come out 300
        // kbit/s apart, a sound packet after every third picture packet.
        let full_us = (1452.0 * 8.0 / 300.0 * 1000.0) as u64;
        let told = (1..20u64).find_map(|i| {
            let at = 5_010_000 + i * full_us;
            d.on_datagram(at, 1452);
            if i % 3 == 0 {
                d.on_datagram(at + 5_000, 120);
            }
            d.fell_kbps(at + 5_000).map(|kbps| (at - 5_000_000, kbps))
        });
        let (after_us, kbps) = told.expect("the drop was not told");
        assert!(after_us <= 250_000, "told after {after_us} µs");
        assert!(near(Some(kbps), 300.0), "fell to {kbps}");
    }

    #[test]
    fn a_link_that_rises_or_wobbles_has_not_fallen() {
        let mut d = Dispersion::default();
        through_link(&mut d, 500.0, 2, 40_000, (0, 3_000_000));
        through_link(&mut d, 2000.0, 2, 40_000, (3_000_000, 1_000_000));
        through_link(&mut d, 1200.0, 2, 40_000, (4_000_000, 1_000_000));
        for ms in (3_000..5_000).step_by(50) {
            assert_eq!(d.fell_kbps(ms * 1000), None, "at {ms} ms");
        }
    }

    #[test]
    fn datagrams_read_at_once_pair_with_nothing() {
        let mut d = Dispersion::default();
        for i in 0..20u64 {
            // A picture's three packets joined by GRO, one read every 33 ms.
            d.on_batch(i * 33_000, 3 * 1452, 1452);
        }
        assert_eq!(d.capacity_kbps(660_000), None);
        // Single datagrams still pair; a joined read between them breaks the pair.
        for i in 0..20u64 {
            d.on_batch(700_000 + i * 10_000, 1452, 1452);
        }
        d.on_batch(900_000, 2 * 1452, 1452);
        d.on_batch(901_000, 1452, 1452);
        let got = d.capacity_kbps(901_000);
        assert!(near(got, 1452.0 * 8.0 / 10.0), "{got:?}");
    }
}
