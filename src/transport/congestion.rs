//! A latency-bounded congestion controller for live media.
//!
//! Loss-based controllers (Cubic, NewReno) fill the bottleneck's queue until it
//! overflows: on a school link with a 64 KiB buffer at 300 kbit/s that is 1.7 s of
//! delay, and once a packet is in that queue nothing can take it back, not even
//! audio. And random loss (radio, satellite) halves their window although nothing
//! is congested.
//!
//! This controller keeps at most `rate x (min RTT + target)` in flight, where the
//! rate is what the path delivered recently. The backlog then waits in our own send
//! buffer, where moq-lite's priorities put audio first and stale groups are reset
//! unsent, instead of in the modem. When the RTT rises `target` above its minimum
//! the queue is building: the rate falls at once to what the path delivers now.
//! Isolated losses are ignored; a persistent congestion (everything lost for a
//! while) halves the rate.
//!
//! The core ([`RateWindow`]) is sans-IO and is tested on simulated time; the quinn
//! [`Controller`](quinn::congestion::Controller) around it only feeds it.

use std::{any::Any, collections::VecDeque, sync::Arc, time::Duration};

use quinn::congestion::{Controller, ControllerFactory};
use quinn_proto::RttEstimator;
use std::time::Instant;

/// Settings of the latency-bounded controller.
#[derive(Debug, Clone, Copy)]
pub struct LatencyBoundedConfig {
    /// Queueing delay allowed at the bottleneck before the rate is cut.
    pub queue_target: Duration,
    /// Window before the first rate sample, in packets.
    pub initial_packets: u64,
}

impl Default for LatencyBoundedConfig {
    fn default() -> Self {
        Self {
            queue_target: Duration::from_millis(80),
            initial_packets: 10,
        }
    }
}

/// See [`RateWindow::update_window`].
const PROBE_GAIN: f64 = 1.25;

/// The sans-IO core: delivery-rate samples in, a window out.
#[derive(Debug, Clone)]
pub struct RateWindow {
    config: LatencyBoundedConfig,
    mtu: u64,
    min_rtt: Option<Duration>,
    /// Freshest RTT of the current ack batch (now - sent of the newest packet acked).
    batch_rtt: Option<Duration>,
    interval_start: Option<Instant>,
    interval_bytes: u64,
    interval_app_limited: bool,
    /// Delivery-rate samples (bytes per second) inside the max-filter window.
    samples: VecDeque<(Instant, f64)>,
    window: u64,
}

impl RateWindow {
    pub fn new(config: LatencyBoundedConfig, mtu: u16) -> Self {
        let mtu = u64::from(mtu);
        Self {
            window: config.initial_packets * mtu,
            config,
            mtu,
            min_rtt: None,
            batch_rtt: None,
            interval_start: None,
            interval_bytes: 0,
            interval_app_limited: false,
            samples: VecDeque::new(),
        }
    }

    /// Bytes that may be in flight.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// The delivery rate the window is built on, in bits per second.
    pub fn rate_bps(&self) -> Option<f64> {
        self.estimate().map(|r| r * 8.0)
    }

    fn estimate(&self) -> Option<f64> {
        self.samples.iter().map(|&(_, r)| r).reduce(f64::max)
    }

    fn min_window(&self) -> u64 {
        4 * self.mtu
    }

    /// One packet of `bytes`, sent at `sent`, was acknowledged at `now`.
    pub fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        min_rtt: Duration,
    ) {
        self.min_rtt = Some(self.min_rtt.map_or(min_rtt, |m| m.min(min_rtt)));
        let rtt = now.saturating_duration_since(sent);
        self.batch_rtt = Some(self.batch_rtt.map_or(rtt, |r| r.min(rtt)));
        self.interval_start.get_or_insert(now);
        self.interval_bytes += bytes;
        self.interval_app_limited |= app_limited;
    }

    /// The end of an ack batch: take a rate sample when an interval is complete.
    pub fn on_end_acks(&mut self, now: Instant) {
        let (Some(start), Some(min_rtt)) = (self.interval_start, self.min_rtt) else {
            return;
        };
        let latest_rtt = self.batch_rtt.take().unwrap_or(min_rtt);
        // A round trip, and at least four packets at the current rate: at 300 kbit/s
        // a round trip of 80 ms holds two, and a sample of one ack (or of one audio
        // packet) read as a link of 15 kbit/s.
        let packets = self.estimate().map_or(Duration::ZERO, |r| {
            Duration::from_secs_f64(4.0 * self.mtu as f64 / r.max(1.0))
        });
        let interval = min_rtt
            .max(packets)
            .clamp(Duration::from_millis(20), Duration::from_millis(500));
        let elapsed = now.saturating_duration_since(start);
        if elapsed < interval {
            return;
        }
        let rate = self.interval_bytes as f64 / elapsed.as_secs_f64();
        let queue_building = latest_rtt > self.unqueued_rtt(min_rtt) + self.config.queue_target;
        if queue_building {
            // The bottleneck is full: what it delivers now is its rate; but never
            // below half the estimate in one sample (a drop to a seventh takes three,
            // a few hundred ms), as one sample can still be short of the link's rate.
            let floor = self.estimate().map_or(0.0, |e| e / 2.0);
            self.samples.clear();
            self.samples.push_back((now, rate.max(floor)));
        } else if !(self.interval_app_limited && self.estimate().is_some_and(|e| rate < e)) {
            // A sample from an idle sender says nothing about the path unless it is higher.
            self.samples.push_back((now, rate));
        }
        // The max filter remembers about ten round trips (0.5 to 2 s).
        let keep = (min_rtt * 10).clamp(Duration::from_millis(500), Duration::from_secs(2));
        while self.samples.len() > 1
            && self
                .samples
                .front()
                .is_some_and(|&(t, _)| now.saturating_duration_since(t) > keep)
        {
            self.samples.pop_front();
        }
        self.interval_start = Some(now);
        self.interval_bytes = 0;
        self.interval_app_limited = false;
        self.update_window(min_rtt, latest_rtt);
        tracing::trace!(
            rate_kbps = (rate * 8.0 / 1000.0) as u64,
            estimate_kbps = self.estimate().map(|e| (e * 8.0 / 1000.0) as u64),
            window = self.window,
            rtt_ms = latest_rtt.as_millis() as u64,
            min_rtt_ms = min_rtt.as_millis() as u64,
            queue_building,
            "rate sample"
        );
    }

    /// Everything sent for a while was lost (an outage or a collapse): halve the rate.
    pub fn on_persistent_congestion(&mut self) {
        for (_, rate) in self.samples.iter_mut() {
            *rate /= 2.0;
        }
        if let Some(min_rtt) = self.min_rtt {
            self.update_window(min_rtt, Duration::MAX);
        }
    }

    /// The round trip of a full packet through an empty queue: the minimum RTT
    /// (which the sound's small packets and the acks set) plus twice the time the
    /// bottleneck takes to send one full packet at the estimated rate: once for the
    /// packet itself, once more for the next one, which its ack waits for (a
    /// receiver acks every second packet). At 300 kbit/s a packet takes 39 ms, half
    /// the path's own round trip: without this every full packet looked queued, the
    /// window never got its probing gain, and it held the rate at 240 kbit/s with the
    /// backlog waiting at the relay.
    fn unqueued_rtt(&self, min_rtt: Duration) -> Duration {
        let packet = self.estimate().map_or(Duration::ZERO, |rate| {
            Duration::from_secs_f64(self.mtu as f64 / rate.max(1.0))
        });
        min_rtt + (2 * packet).min(Duration::from_millis(300))
    }

    fn update_window(&mut self, min_rtt: Duration, latest_rtt: Duration) {
        let Some(rate) = self.estimate() else { return };
        let base = self.unqueued_rtt(min_rtt);
        // A quarter of the target as standing queue: enough to keep the link busy and
        // to see a rise, well under the cut threshold. (Half, once `base` covered a
        // full packet's time, raised the median glass-to-glass latency on a 500 kbit/s
        // link by 60 ms, a quarter by 35 ms, against the 240k-on-300k window.)
        let horizon = base + self.config.queue_target / 4;
        // While there is no queue at all, a quarter more: the rate is measured
        // through the window itself, and acks come in pairs or a delay after (a
        // packet every 32 ms at 300 kbit/s), so a window of exactly rate x horizon
        // can deliver less than the rate, which then measures lower: it settled at
        // 73% of a 300 kbit/s link with the backlog waiting at the relay. The extra
        // lets the samples find the link's rate (BBR's window gain, for the same
        // reason, is 2); once a queue shows, the window is rate x horizon again.
        let gain = if latest_rtt < base + self.config.queue_target / 4 {
            PROBE_GAIN
        } else {
            1.0
        };
        self.window = ((rate * horizon.as_secs_f64() * gain) as u64).max(self.min_window());
    }

    pub fn on_mtu_update(&mut self, mtu: u16) {
        self.mtu = u64::from(mtu);
        self.window = self.window.max(self.min_window());
    }
}

/// The quinn side of [`RateWindow`].
#[derive(Debug, Clone)]
pub struct LatencyBounded {
    core: RateWindow,
    initial: u64,
}

impl Controller for LatencyBounded {
    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        rtt: &RttEstimator,
    ) {
        self.core.on_ack(now, sent, bytes, app_limited, rtt.min());
    }

    fn on_end_acks(
        &mut self,
        now: Instant,
        _in_flight: u64,
        _app_limited: bool,
        _largest: Option<u64>,
    ) {
        self.core.on_end_acks(now);
    }

    fn on_congestion_event(
        &mut self,
        _now: Instant,
        _sent: Instant,
        persistent: bool,
        _lost_bytes: u64,
    ) {
        if persistent {
            self.core.on_persistent_congestion();
        }
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.core.on_mtu_update(new_mtu);
    }

    fn window(&self) -> u64 {
        self.core.window()
    }

    fn metrics(&self) -> quinn::congestion::ControllerMetrics {
        let mut metrics = quinn::congestion::ControllerMetrics::default();
        metrics.congestion_window = self.window();
        metrics.pacing_rate = self.core.rate_bps().map(|r| r as u64);
        metrics
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(self.clone())
    }

    fn initial_window(&self) -> u64 {
        self.initial
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

impl ControllerFactory for LatencyBoundedConfig {
    fn build(self: Arc<Self>, _now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        let core = RateWindow::new(*self, current_mtu);
        Box::new(LatencyBounded {
            initial: core.window(),
            core,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MTU: u16 = 1200;

    /// A bottleneck of `rate` bytes/s with one-way `delay` and an unbounded FIFO,
    /// fed by a sender that always has data (or `app_rate` bytes/s at most), on
    /// simulated time in 1 ms steps. Returns the queueing delay seen at the end.
    struct Path {
        rate: f64,
        delay: Duration,
        /// Packets in the bottleneck: time each leaves it, send time.
        queue: VecDeque<(Instant, Instant)>,
        /// Acks on their way back: arrival time, send time.
        acks: VecDeque<(Instant, Instant)>,
        /// Packets the receiver holds an ack for (it acks every second packet, or
        /// `ack_delay` after the first, as QUIC receivers do): arrival, send time.
        unacked: Vec<(Instant, Instant)>,
        ack_delay: Duration,
        min_rtt: Duration,
        free_at: Instant,
        in_flight: u64,
        max_queue_delay: Duration,
    }

    impl Path {
        fn new(start: Instant, rate_bps: f64, rtt: Duration) -> Self {
            Self {
                rate: rate_bps / 8.0,
                delay: rtt / 2,
                queue: VecDeque::new(),
                acks: VecDeque::new(),
                unacked: Vec::new(),
                ack_delay: Duration::ZERO,
                min_rtt: Duration::MAX,
                free_at: start,
                in_flight: 0,
                max_queue_delay: Duration::ZERO,
            }
        }

        /// Run for `duration`; `app_rate` (bytes/s) limits the sender when set.
        fn run(
            &mut self,
            cc: &mut RateWindow,
            now: &mut Instant,
            duration: Duration,
            app_rate: Option<f64>,
        ) {
            let end = *now + duration;
            let mut budget = 0.0f64;
            let mut tokens = 0.0f64;
            let service = Duration::from_secs_f64(f64::from(MTU) / self.rate);
            while *now < end {
                *now += Duration::from_millis(1);
                budget += app_rate.map_or(f64::INFINITY, |r| r / 1000.0);
                let app_limited = budget < f64::from(MTU);
                // Acks that arrived.
                let mut acked = false;
                while self.acks.front().is_some_and(|&(at, _)| at <= *now) {
                    let (_, sent) = self.acks.pop_front().unwrap();
                    self.in_flight -= u64::from(MTU);
                    self.min_rtt = self.min_rtt.min(*now - sent);
                    cc.on_ack(*now, sent, u64::from(MTU), app_limited, self.min_rtt);
                    acked = true;
                }
                if acked {
                    cc.on_end_acks(*now);
                }
                // Packets leaving the bottleneck.
                while self.queue.front().is_some_and(|&(at, _)| at <= *now) {
                    let (at, sent) = self.queue.pop_front().unwrap();
                    self.unacked.push((at + self.delay, sent));
                }
                // The receiver's acks.
                let arrived = self.unacked.iter().filter(|&&(at, _)| at <= *now).count();
                let due = self
                    .unacked
                    .first()
                    .is_some_and(|&(at, _)| at + self.ack_delay <= *now);
                if arrived >= 2 || (arrived > 0 && due) {
                    for (_, sent) in self.unacked.drain(..arrived) {
                        self.acks.push_back((*now + self.delay, sent));
                    }
                }
                // Pace as quinn does: 1.25 x window per RTT, bursts of up to 10 packets.
                let pace = cc.window() as f64 * 1.25 / (self.delay * 2).as_secs_f64() / 1000.0;
                tokens = (tokens + pace).min(10.0 * f64::from(MTU));
                // Send what the window, the pacer and the application allow.
                while self.in_flight + u64::from(MTU) <= cc.window()
                    && budget >= f64::from(MTU)
                    && tokens >= f64::from(MTU)
                {
                    budget -= f64::from(MTU);
                    tokens -= f64::from(MTU);
                    let arrive = *now + self.delay;
                    let start = self.free_at.max(arrive);
                    self.max_queue_delay = self.max_queue_delay.max(start - arrive);
                    self.free_at = start + service;
                    self.queue.push_back((self.free_at, *now));
                    self.in_flight += u64::from(MTU);
                }
                if budget.is_infinite() {
                    budget = 0.0;
                } else {
                    budget = budget.min(64_000.0);
                }
            }
        }

        fn queue_delay(&self, now: Instant) -> Duration {
            self.free_at.saturating_duration_since(now + self.delay)
        }
    }

    fn rate_kbps(cc: &RateWindow) -> f64 {
        cc.rate_bps().unwrap_or(0.0) / 1000.0
    }

    #[test]
    fn fills_the_link_and_keeps_the_queue_near_half_the_target() {
        let mut now = Instant::now();
        let mut cc = RateWindow::new(LatencyBoundedConfig::default(), MTU);
        let mut path = Path::new(now, 2_000_000.0, Duration::from_millis(80));
        path.run(&mut cc, &mut now, Duration::from_secs(5), None);
        let rate = rate_kbps(&cc);
        assert!(
            (1800.0..=2600.0).contains(&rate),
            "rate {rate} kbit/s on a 2000 kbit/s link"
        );
        let queue = path.queue_delay(now);
        assert!(
            queue <= Duration::from_millis(80),
            "standing queue {queue:?}"
        );
    }

    /// `cc` sending all it may for `duration` over the link emulator's own model of
    /// a Mahimahi link (`kbps` both ways, `rtt`): data is delivered at the trace's
    /// opportunities, and so are the acks coming back; the receiver acks every second
    /// packet or 25 ms after the first, as QUIC receivers do. Returns the link's
    /// delivered kbit/s over the last half and the most queueing delay seen there.
    fn over_emulated_link(
        cc: &mut RateWindow,
        kbps: u64,
        rtt: Duration,
        duration: Duration,
    ) -> (f64, Duration) {
        use crate::emulator::{Direction, Impairments, Trace};
        let link = Impairments {
            delay: rtt / 2,
            ..Default::default()
        };
        let mut data = Direction::<Duration>::new(Trace::constant(kbps), link, 1);
        let mut acks = Direction::<Vec<Duration>>::new(Trace::constant(kbps), link, 2);
        let start = Instant::now();
        // The sound's small packets (and the handshake's acks) see the path's own
        // round trip; a full packet also waits out its own serialization, 39 ms at
        // 300 kbit/s, so the minimum RTT is well under what a full packet takes.
        let (mut in_flight, mut min_rtt) = (0u64, rtt + Duration::from_millis(1));
        let mut unacked: Vec<Duration> = Vec::new();
        let mut first_unacked_at = Duration::ZERO;
        let (mut delivered, mut worst_queue) = (0u64, Duration::ZERO);
        let mut t = Duration::ZERO;
        while t < duration {
            t += Duration::from_millis(1);
            let now = start + t;
            let second_half = t > duration / 2;
            for sent in data.poll_deliver(t) {
                if second_half {
                    delivered += u64::from(MTU);
                    worst_queue = worst_queue.max(t.saturating_sub(sent + rtt / 2));
                }
                if unacked.is_empty() {
                    first_unacked_at = t;
                }
                unacked.push(sent);
            }
            if unacked.len() >= 2
                || (!unacked.is_empty() && t >= first_unacked_at + Duration::from_millis(25))
            {
                let _ = acks.enqueue(t, 50, std::mem::take(&mut unacked));
            }
            let batches = acks.poll_deliver(t);
            for sent in batches.iter().flatten() {
                in_flight -= u64::from(MTU);
                min_rtt = min_rtt.min(t - *sent);
                cc.on_ack(now, start + *sent, u64::from(MTU), false, min_rtt);
            }
            if !batches.is_empty() {
                cc.on_end_acks(now);
            }
            while in_flight + u64::from(MTU) <= cc.window() {
                if data.enqueue(t, usize::from(MTU), t).is_ok() {
                    in_flight += u64::from(MTU);
                }
            }
        }
        let kbps = delivered as f64 * 8.0 / 1000.0 / (duration / 2).as_secs_f64();
        (kbps, worst_queue)
    }

    #[test]
    fn fills_a_slow_link_although_acks_come_late() {
        // 300 kbit/s: a packet every 32 ms and an ack opportunity every 40; the acks
        // come in pairs or after 25 ms, so the minimum RTT is well over the path's.
        let mut cc = RateWindow::new(LatencyBoundedConfig::default(), MTU);
        let (kbps, queue) = over_emulated_link(
            &mut cc,
            300,
            Duration::from_millis(80),
            Duration::from_secs(20),
        );
        // (It measured 240 kbit/s when a full packet's own serialization was taken
        // for queueing.)
        assert!(kbps >= 270.0, "{kbps:.0} kbit/s through a 300 kbit/s link");
        // Counted from when the packet would have arrived with no queue and no
        // serialization: its own 32 ms are in it.
        assert!(
            queue <= Duration::from_millis(130),
            "queueing delay up to {queue:?}"
        );
    }

    #[test]
    fn a_bandwidth_drop_cuts_the_window_before_the_queue_grows_long() {
        let mut now = Instant::now();
        let mut cc = RateWindow::new(LatencyBoundedConfig::default(), MTU);
        let mut path = Path::new(now, 2_000_000.0, Duration::from_millis(80));
        path.run(&mut cc, &mut now, Duration::from_secs(5), None);
        path.rate = 300_000.0 / 8.0;
        path.max_queue_delay = Duration::ZERO;
        path.run(&mut cc, &mut now, Duration::from_secs(3), None);
        // Whatever was in flight at 2 Mbit/s drains through a 300 kbit/s link (about
        // 0.6 s); after that the queue is bounded again.
        assert!(
            path.max_queue_delay < Duration::from_millis(1000),
            "peak {:?}",
            path.max_queue_delay
        );
        assert!(
            path.queue_delay(now) <= Duration::from_millis(120),
            "queue {:?}",
            path.queue_delay(now)
        );
        let rate = rate_kbps(&cc);
        assert!(
            (250.0..=450.0).contains(&rate),
            "rate {rate} kbit/s after a drop to 300"
        );
    }

    #[test]
    fn a_bandwidth_rise_is_found_within_seconds() {
        let mut now = Instant::now();
        let mut cc = RateWindow::new(LatencyBoundedConfig::default(), MTU);
        let mut path = Path::new(now, 300_000.0, Duration::from_millis(80));
        path.run(&mut cc, &mut now, Duration::from_secs(5), None);
        path.rate = 2_000_000.0 / 8.0;
        path.run(&mut cc, &mut now, Duration::from_secs(3), None);
        let rate = rate_kbps(&cc);
        assert!(
            rate >= 1600.0,
            "rate {rate} kbit/s 3 s after a rise to 2000"
        );
    }

    #[test]
    fn an_application_limited_sender_keeps_its_estimate() {
        let mut now = Instant::now();
        let mut cc = RateWindow::new(LatencyBoundedConfig::default(), MTU);
        let mut path = Path::new(now, 2_000_000.0, Duration::from_millis(80));
        path.run(&mut cc, &mut now, Duration::from_secs(5), None);
        let before = rate_kbps(&cc);
        // Audio only for a while: 40 kbit/s.
        path.run(&mut cc, &mut now, Duration::from_secs(1), Some(5_000.0));
        let after = rate_kbps(&cc);
        assert!(
            after >= before * 0.8,
            "estimate fell from {before} to {after} while idle"
        );
    }

    #[test]
    fn persistent_congestion_halves_the_rate() {
        let mut now = Instant::now();
        let mut cc = RateWindow::new(LatencyBoundedConfig::default(), MTU);
        let mut path = Path::new(now, 1_000_000.0, Duration::from_millis(80));
        path.run(&mut cc, &mut now, Duration::from_secs(5), None);
        let (rate, window) = (rate_kbps(&cc), cc.window());
        cc.on_persistent_congestion();
        assert!((rate_kbps(&cc) - rate / 2.0).abs() < 1.0);
        // Not quite half the window: a packet takes twice as long at half the rate,
        // and the window covers that too (see `RateWindow::unqueued_rtt`).
        assert!(cc.window() < window * 6 / 10 && cc.window() >= cc.min_window());
    }
}
