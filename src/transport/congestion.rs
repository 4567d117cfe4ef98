//! A latency-bounded congestion controller for live media.
//!
//! Loss-based controllers (Cubic, NewReno) fill the bottleneck's queue until it
//! overflows: on a school link with a 64 KiB buffer at 300 kbit/s that is 1.7 s of
//! delay, and once a packet is in that queue nothing can take it back, not even
//! audio. And random loss (radio, satellite) halves their window although nothing
//! is congested.
//!
//! This controller keeps at most `rate x (unqueued RTT + target / 4)` in flight,
//! where the rate is what the path delivered recently and the unqueued RTT is the
//! minimum plus two full packets' time on the link (see [`RateWindow::update_window`]).
//! The backlog then waits in our own send buffer, where moq-lite's priorities put
//! audio first and stale groups are skipped (reset, once handed to QUIC), instead of
//! in the modem. When the RTT
//! rises `target` above the unqueued RTT the queue is building: the rate falls at
//! once to what the path delivers now.
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
        let gain = if latest_rtt < horizon {
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
mod tests;
