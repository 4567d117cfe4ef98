//! The controller on simulated time: a fluid bottleneck, and the emulator's own
//! scheduler with delayed acks.

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

/// 5 s on an 80 ms path at `from` bit/s, then 3 s at `to`; the peak queueing delay
/// counts from the step.
fn after_a_step(from: f64, to: f64) -> (RateWindow, Path, Instant) {
    let mut now = Instant::now();
    let mut cc = RateWindow::new(LatencyBoundedConfig::default(), MTU);
    let mut path = Path::new(now, from, Duration::from_millis(80));
    path.run(&mut cc, &mut now, Duration::from_secs(5), None);
    path.rate = to / 8.0;
    path.max_queue_delay = Duration::ZERO;
    path.run(&mut cc, &mut now, Duration::from_secs(3), None);
    (cc, path, now)
}

#[test]
fn a_bandwidth_drop_cuts_the_window_before_the_queue_grows_long() {
    let (cc, path, now) = after_a_step(2_000_000.0, 300_000.0);
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
    let (cc, _, _) = after_a_step(300_000.0, 2_000_000.0);
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
