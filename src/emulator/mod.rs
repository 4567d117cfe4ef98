//! `LinkEmulator`: a bad school link on loopback, since netem is absent here.
//!
//! In: UDP datagrams in both directions. Out: the same datagrams, late, lost or
//! dropped as a real link would: bandwidth from a Mahimahi trace (each line a
//! millisecond at which one 1500-byte delivery opportunity occurs; the trace repeats;
//! as in Mahimahi, a packet's bytes may span opportunities, so small and large packets
//! mixed waste none of the link),
//! a drop-tail queue limited in bytes, one-way delay, jitter and random loss.
//!
//! The scheduler ([`Direction`]) is a pure function of simulated time, unit-tested
//! exactly; [`proxy`] drives it with real sockets.

pub mod proxy;

use std::{collections::VecDeque, path::Path, time::Duration};

/// Bytes one delivery opportunity may carry (Mahimahi's MTU).
pub const OPPORTUNITY_BYTES: usize = 1500;

/// A bandwidth trace: delivery opportunities in milliseconds, repeating every `period_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    opportunities_ms: Vec<u64>,
    period_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot read trace {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("trace line {line}: `{text}` is not a millisecond count")]
    Line { line: usize, text: String },
    #[error("trace line {line}: {ms} ms comes before the previous line's {previous} ms")]
    Order { line: usize, ms: u64, previous: u64 },
    #[error("the trace has no delivery opportunities (or ends at 0 ms)")]
    Empty,
}

impl Trace {
    pub fn load(path: &Path) -> Result<Self, TraceError> {
        let text = std::fs::read_to_string(path).map_err(|source| TraceError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, TraceError> {
        let mut opportunities_ms = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_text = line.trim();
            if line_text.is_empty() || line_text.starts_with('#') {
                continue;
            }
            let ms: u64 = line_text.parse().map_err(|_| TraceError::Line {
                line: i + 1,
                text: line_text.into(),
            })?;
            if let Some(&previous) = opportunities_ms.last()
                && ms < previous
            {
                return Err(TraceError::Order {
                    line: i + 1,
                    ms,
                    previous,
                });
            }
            opportunities_ms.push(ms);
        }
        let period_ms = *opportunities_ms.last().ok_or(TraceError::Empty)?;
        if period_ms == 0 {
            return Err(TraceError::Empty);
        }
        Ok(Self {
            opportunities_ms,
            period_ms,
        })
    }

    /// A constant rate, for tests and the unshaped direction.
    pub fn constant(kbps: u64) -> Self {
        // One opportunity carries 12 kbit; over a 60 s period.
        let per_second = (kbps * 1000).div_ceil(OPPORTUNITY_BYTES as u64 * 8).max(1);
        let count = per_second * 60;
        let opportunities_ms = (1..=count).map(|i| i * 60_000 / count).collect();
        Self {
            opportunities_ms,
            period_ms: 60_000,
        }
    }

    pub fn period(&self) -> Duration {
        Duration::from_millis(self.period_ms)
    }

    /// The first opportunity at or after `t` (since the start of the emulation).
    pub fn next_opportunity(&self, t: Duration) -> Duration {
        let t_ms = t.as_nanos().div_ceil(1_000_000) as u64;
        let (cycle, offset) = (t_ms / self.period_ms, t_ms % self.period_ms);
        // The last line is the period itself, so every whole period is an opportunity.
        if offset == 0 && t_ms > 0 {
            return Duration::from_millis(t_ms);
        }
        let idx = self.opportunities_ms.partition_point(|&o| o < offset);
        Duration::from_millis(cycle * self.period_ms + self.opportunities_ms[idx])
    }

    /// Link capacity over [from, to), in bits per second.
    pub fn capacity_bps(&self, from: Duration, to: Duration) -> f64 {
        if to <= from {
            return 0.0;
        }
        let mut count = 0u64;
        let mut t = self.next_opportunity(from);
        while t < to {
            count += 1;
            t = self.next_opportunity(t + Duration::from_millis(1));
        }
        count as f64 * OPPORTUNITY_BYTES as f64 * 8.0 / (to - from).as_secs_f64()
    }
}

/// Impairments of one direction besides the trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairments {
    pub delay: Duration,
    /// Each packet's delay varies uniformly by up to ± this (order is kept).
    pub jitter: Duration,
    /// Probability in [0, 1) that a packet is lost on entry.
    pub loss: f64,
    /// Drop-tail: a packet that would make the queue exceed this is dropped.
    pub queue_bytes: usize,
}

impl Default for Impairments {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            queue_bytes: 64 * 1024,
        }
    }
}

/// Why a packet did not make it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    Loss,
    QueueFull,
}

/// Counters of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionStats {
    pub offered_packets: u64,
    pub delivered_packets: u64,
    pub delivered_bytes: u64,
    pub lost: u64,
    pub queue_drops: u64,
}

/// One direction of the link: bottleneck queue served by the trace, then delay.
pub struct Direction<P> {
    trace: Trace,
    impairments: Impairments,
    /// Waiting for a delivery opportunity.
    queue: VecDeque<(usize, P)>,
    queued_bytes: usize,
    /// Bytes of the queue's front packet not yet served (`None`: not started).
    front_left: Option<usize>,
    /// Past the bottleneck, waiting out the propagation delay: (release time, packet).
    in_flight: VecDeque<(Duration, P)>,
    /// Deterministic randomness for loss and jitter (seeded: runs are repeatable).
    rng: SplitMix64,
    /// The next opportunity not yet used.
    next_opportunity: Duration,
    stats: DirectionStats,
}

impl<P> Direction<P> {
    pub fn new(trace: Trace, impairments: Impairments, seed: u64) -> Self {
        let next_opportunity = trace.next_opportunity(Duration::ZERO);
        Self {
            trace,
            impairments,
            queue: VecDeque::new(),
            queued_bytes: 0,
            front_left: None,
            in_flight: VecDeque::new(),
            rng: SplitMix64(seed),
            next_opportunity,
            stats: DirectionStats::default(),
        }
    }

    pub fn stats(&self) -> DirectionStats {
        self.stats
    }

    /// A packet of `len` bytes arrives at `now`.
    pub fn enqueue(&mut self, now: Duration, len: usize, packet: P) -> Result<(), Drop> {
        self.stats.offered_packets += 1;
        self.advance(now);
        if self.impairments.loss > 0.0 && self.rng.next_f64() < self.impairments.loss {
            self.stats.lost += 1;
            return Err(Drop::Loss);
        }
        if self.queued_bytes + len > self.impairments.queue_bytes {
            self.stats.queue_drops += 1;
            return Err(Drop::QueueFull);
        }
        // Unused opportunities do not accumulate: an idle link has no saved-up credit.
        if self.queue.is_empty() && self.next_opportunity < now {
            self.next_opportunity = self.trace.next_opportunity(now);
        }
        self.queued_bytes += len;
        self.queue.push_back((len, packet));
        Ok(())
    }

    /// Serve every opportunity up to `now`, moving packets into flight. A packet
    /// leaves when its last byte has been served, which may be in a later
    /// opportunity than its first (Mahimahi's `LinkQueue` does the same).
    fn advance(&mut self, now: Duration) {
        while !self.queue.is_empty() && self.next_opportunity <= now {
            let at = self.next_opportunity;
            let mut budget = OPPORTUNITY_BYTES;
            while let Some((len, _)) = self.queue.front() {
                let left = self.front_left.get_or_insert(*len);
                let served = budget.min(*left);
                *left -= served;
                budget -= served;
                if *left > 0 {
                    break;
                }
                self.front_left = None;
                let (len, packet) = self.queue.pop_front().expect("front exists");
                self.queued_bytes -= len;
                let release = self.release_time(at);
                self.in_flight.push_back((release, packet));
                self.stats.delivered_packets += 1;
                self.stats.delivered_bytes += len as u64;
                if budget == 0 {
                    break;
                }
            }
            self.next_opportunity = self.trace.next_opportunity(at + Duration::from_millis(1));
        }
    }

    /// When a packet that left the bottleneck at `at` comes out of the far end:
    /// after the delay, give or take the jitter, but never before the one ahead of it.
    fn release_time(&mut self, at: Duration) -> Duration {
        let mut release = at + self.impairments.delay;
        if !self.impairments.jitter.is_zero() {
            let swing = self.impairments.jitter.mul_f64(self.rng.next_f64() * 2.0);
            release = (release + swing).saturating_sub(self.impairments.jitter);
        }
        match self.in_flight.back() {
            Some((previous, _)) => release.max(*previous),
            None => release,
        }
    }

    /// Packets that have come out of the far end by `now`, in order.
    pub fn poll_deliver(&mut self, now: Duration) -> Vec<P> {
        self.advance(now);
        let mut out = Vec::new();
        while self
            .in_flight
            .front()
            .is_some_and(|(release, _)| *release <= now)
        {
            out.push(self.in_flight.pop_front().expect("front exists").1);
        }
        out
    }

    /// When something next happens (an opportunity with a packet waiting, or a
    /// release), for the driver's timer. `None`: idle.
    pub fn next_event(&self) -> Option<Duration> {
        let release = self.in_flight.front().map(|(t, _)| *t);
        let serve = (!self.queue.is_empty()).then_some(self.next_opportunity);
        match (release, serve) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A tiny deterministic generator (SplitMix64); statistical quality is ample for
/// loss and jitter draws.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn trace_parses_and_repeats() {
        let t = Trace::parse("5\n10\n10\n20\n").unwrap();
        assert_eq!(t.period(), ms(20));
        assert_eq!(t.next_opportunity(ms(0)), ms(5));
        assert_eq!(t.next_opportunity(ms(6)), ms(10));
        assert_eq!(t.next_opportunity(ms(11)), ms(20));
        assert_eq!(t.next_opportunity(ms(21)), ms(25));
        assert!(matches!(
            Trace::parse("5\nx\n"),
            Err(TraceError::Line { line: 2, .. })
        ));
        assert!(matches!(
            Trace::parse("5\n3\n"),
            Err(TraceError::Order { line: 2, .. })
        ));
        assert!(matches!(Trace::parse("\n"), Err(TraceError::Empty)));
    }

    #[test]
    fn sample_traces_have_the_rates_their_names_say() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/traces");
        if !dir.exists() {
            return; // shared/ sits beside the checkout in CI and here
        }
        let t = Trace::load(&dir.join("const-500k.trace")).unwrap();
        let bps = t.capacity_bps(Duration::ZERO, t.period());
        assert!((bps - 500_000.0).abs() < 10_000.0, "{bps}");
        let step = Trace::load(&dir.join("step-2000k-300k-2000k.trace")).unwrap();
        let low = step.capacity_bps(Duration::from_secs(25), Duration::from_secs(35));
        assert!((low - 300_000.0).abs() < 20_000.0, "{low}");
    }

    fn every_10ms() -> Trace {
        Trace::parse(
            &(1..=100)
                .map(|i| (i * 10).to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        )
        .unwrap()
    }

    #[test]
    fn bandwidth_spaces_packets_by_opportunity() {
        // One opportunity every 10 ms: 1200 kbit/s.
        let mut d = Direction::new(every_10ms(), Impairments::default(), 1);
        for i in 0..3 {
            d.enqueue(ms(0), 1500, i).unwrap();
        }
        assert!(d.poll_deliver(ms(9)).is_empty());
        assert_eq!(d.poll_deliver(ms(10)), vec![0]);
        assert_eq!(d.next_event(), Some(ms(20)));
        assert_eq!(d.poll_deliver(ms(35)), vec![1, 2]);
        assert_eq!(d.next_event(), None);
    }

    #[test]
    fn small_packets_share_an_opportunity() {
        let mut d = Direction::new(Trace::parse("10\n20\n").unwrap(), Impairments::default(), 1);
        for i in 0..4 {
            d.enqueue(ms(0), 500, i).unwrap();
        }
        assert_eq!(d.poll_deliver(ms(10)), vec![0, 1, 2]);
        assert_eq!(d.poll_deliver(ms(20)), vec![3]);
    }

    #[test]
    fn a_packet_spans_opportunities() {
        // 1000-byte packets on 1500-byte opportunities: two packets take three
        // opportunities' worth of bytes in two opportunities, nothing is wasted.
        let mut d = Direction::new(
            Trace::parse("10\n20\n30\n").unwrap(),
            Impairments::default(),
            1,
        );
        for i in 0..4 {
            d.enqueue(ms(0), 1000, i).unwrap();
        }
        assert_eq!(d.poll_deliver(ms(10)), vec![0]);
        assert_eq!(d.poll_deliver(ms(20)), vec![1, 2]);
        assert_eq!(d.poll_deliver(ms(30)), vec![3]);
        // A packet larger than an opportunity needs as many as its bytes fill.
        let mut d = Direction::new(every_10ms(), Impairments::default(), 1);
        d.enqueue(ms(0), 4000, 'j').unwrap();
        assert!(d.poll_deliver(ms(29)).is_empty());
        assert_eq!(d.poll_deliver(ms(30)), vec!['j']);
    }

    #[test]
    fn delay_and_drop_tail_queue() {
        let imp = Impairments {
            delay: ms(40),
            queue_bytes: 3000,
            ..Default::default()
        };
        let mut d = Direction::new(Trace::parse("1\n2\n").unwrap(), imp, 1);
        d.enqueue(ms(0), 1500, 'b').unwrap();
        d.enqueue(ms(0), 1500, 'c').unwrap();
        assert_eq!(d.enqueue(ms(0), 100, 'd'), Err(Drop::QueueFull));
        assert!(d.poll_deliver(ms(40)).is_empty());
        assert_eq!(d.poll_deliver(ms(41)), vec!['b']);
        assert_eq!(d.poll_deliver(ms(42)), vec!['c']);
        let s = d.stats();
        assert_eq!((s.queue_drops, s.delivered_packets), (1, 2));
    }

    #[test]
    fn random_loss_matches_its_rate_and_is_repeatable() {
        let imp = Impairments {
            loss: 0.01,
            queue_bytes: usize::MAX,
            ..Default::default()
        };
        let run = |seed| {
            let mut d = Direction::new(Trace::constant(100_000), imp, seed);
            for i in 0..100_000u32 {
                let _ = d.enqueue(ms(i as u64 / 100), 100, i);
            }
            d.stats().lost
        };
        let lost = run(7);
        assert!((800..1200).contains(&lost), "{lost}");
        assert_eq!(lost, run(7));
    }

    #[test]
    fn outage_holds_packets_until_the_link_returns() {
        // Opportunities at 1..=5 ms, then nothing until 1000 ms (a ~1 s outage).
        let trace = Trace::parse("1\n2\n3\n4\n5\n1000\n1001\n").unwrap();
        let mut d = Direction::new(trace, Impairments::default(), 1);
        d.enqueue(ms(10), 1200, 1).unwrap();
        assert!(d.poll_deliver(ms(999)).is_empty());
        assert_eq!(d.poll_deliver(ms(1000)), vec![1]);
    }

    #[test]
    fn idle_link_saves_no_credit() {
        let mut d = Direction::new(every_10ms(), Impairments::default(), 1);
        // Nothing sent for 500 ms, then a burst: it leaves at the link's pace.
        for i in 0..3 {
            d.enqueue(ms(500), 1500, i).unwrap();
        }
        assert_eq!(d.poll_deliver(ms(500)), vec![0]);
        assert!(d.poll_deliver(ms(509)).is_empty());
        assert_eq!(d.poll_deliver(ms(510)), vec![1]);
        assert_eq!(d.poll_deliver(ms(520)), vec![2]);
    }

    #[test]
    fn jitter_spreads_delay_but_keeps_order() {
        let imp = Impairments {
            delay: ms(50),
            jitter: ms(20),
            queue_bytes: usize::MAX,
            ..Default::default()
        };
        let mut d = Direction::new(Trace::constant(12_000_000), imp, 3);
        for i in 0..1000u32 {
            d.enqueue(ms(i as u64), 1000, i).unwrap();
        }
        let mut out = Vec::new();
        let mut earliest = None;
        for t in 0..2000 {
            let got = d.poll_deliver(ms(t));
            if !got.is_empty() && earliest.is_none() {
                earliest = Some(t);
            }
            out.extend(got);
        }
        assert_eq!(
            out,
            (0..1000).collect::<Vec<_>>(),
            "order kept, nothing lost"
        );
        let first = earliest.unwrap();
        assert!((30..=71).contains(&first), "first release at {first} ms");
    }

    #[test]
    fn capacity_of_a_constant_trace() {
        let t = Trace::constant(500);
        let bps = t.capacity_bps(Duration::ZERO, Duration::from_secs(60));
        assert!((bps - 504_000.0).abs() < 1000.0, "{bps}");
    }
}
