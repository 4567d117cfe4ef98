//! The audio playout buffer: packets in (in any order, with gaps), packets out in order,
//! each at its capture time plus a playout delay that follows the link's jitter.
//!
//! A speaker plays at a fixed rate, so sound released the moment it arrives breaks up
//! whenever the network delays a packet (the sink runs dry) and then plays the burst
//! behind. Here each packet is released at `capture + base + delay`: `base` is the
//! smallest transit time seen lately (the path's own delay and the clock offset), and
//! `delay` covers the jitter above it. `delay` rises at once when a packet needs more
//! (one stall instead of a stall per packet of a delay spike; a rise that is a gap by
//! itself is taken twice, to get ahead of a queue still growing) and comes back down in
//! steps of one packet, by dropping a packet, once the spike has passed (releasing the
//! rest faster would only move the wait into the sound card's buffer). A packet still
//! missing at its turn is given up (the decoder conceals it); one that comes after its
//! successors were released is late and dropped.
//!
//! The buffer starts at [`START_DELAY_US`], not at the least delay: before it has
//! seen the link it cannot know its jitter, and a slow link shows it at once (a
//! classroom joining at 250 kbit/s gets the picture's join burst ahead of the sound
//! in the link's queue, 100-200 ms at a time). Starting low, each of those rises was
//! a gap in the teacher's first words; starting high costs a link that turns out
//! steady a tenth of a second of extra delay for its first [`JITTER_WINDOW_US`],
//! then the delay comes down as after any spike.
//!
//! Sans-IO: times (Unix microseconds) are passed in; unit-tested on simulated arrivals.

use std::collections::{BTreeMap, VecDeque};

/// Least delay over the base: about one packet of arrival jitter.
pub const MIN_DELAY_US: u64 = 30_000;
/// Delay over the base until the link's jitter has been seen (see the module docs).
/// The least delay plus whole packets of 20 ms and of 40 ms (the sound on a slow
/// link, see [`crate::abr::sound`]), so that shrinking lands on the least.
pub const START_DELAY_US: u64 = MIN_DELAY_US + 5 * 40_000;
/// Most delay over the base: beyond this a conversation stalls, so later packets drop.
pub const MAX_DELAY_US: u64 = 600_000;
/// Headroom added over the worst recent transit when the delay grows.
const MARGIN_US: u64 = 20_000;
/// A rise in wait this large is a gap by itself (see [`Playout::push`]).
const BIG_RISE_US: u64 = 100_000;
/// The worst transit over this window sets the delay the buffer shrinks towards.
const JITTER_WINDOW_US: u64 = 2_000_000;
/// The smallest transit over this window is the base.
const BASE_WINDOW_US: u64 = 10_000_000;
/// At most one packet dropped to shrink the delay per this interval.
const SHRINK_EVERY_US: u64 = 120_000;
/// A packet this far over the base waited in a queue through an outage (the link's
/// buffer gives it up when the link returns, seconds late): dropped, not played.
const STALE_US: u64 = MAX_DELAY_US + 400_000;
/// Unless every packet has been that late for this long: then the path itself got
/// slower (a new route), and its delay becomes the base.
const REBASE_AFTER_US: u64 = 1_000_000;

#[derive(Debug)]
pub struct Playout<T> {
    /// The next sequence number to release; `None` until the first release.
    next: Option<u64>,
    /// The highest sequence number that has arrived.
    newest: Option<u64>,
    held: BTreeMap<u64, Held<T>>,
    transits: Transits,
    /// Transits of packets that were the newest when they came (queueing, not
    /// retransmission): what the delay shrinks towards.
    queueing: Transits,
    delay_us: u64,
    last_shrink_us: u64,
    /// When the first packet came: the delay does not shrink before the jitter of a
    /// whole [`JITTER_WINDOW_US`] has been seen.
    first_arrival_us: Option<u64>,
    /// Since when every packet has been stale (see [`STALE_US`]).
    stale_since: Option<u64>,
    /// Packets dropped to shrink the delay, and packets that came too late.
    pub shrunk: u64,
    pub late: u64,
}

#[derive(Debug)]
struct Held<T> {
    capture_us: u64,
    /// Plays by then at the latest: set for a packet that came late and raised the
    /// delay (see [`Playout::push`]).
    due_us: Option<u64>,
    item: T,
}

/// The packet came after newer ones were already released.
#[derive(Debug, PartialEq, Eq)]
pub struct Late;

/// What [`Playout::pop`] gives: the next packet to play, how many missing packets
/// before it were given up, and how many were dropped to shrink the delay.
#[derive(Debug, PartialEq, Eq)]
pub struct Release<T> {
    pub item: T,
    pub skipped: u64,
    pub dropped: u64,
}

impl<T> Default for Playout<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Playout<T> {
    pub fn new() -> Self {
        Self {
            next: None,
            newest: None,
            held: BTreeMap::new(),
            transits: Transits::default(),
            queueing: Transits::over(JITTER_WINDOW_US),
            delay_us: START_DELAY_US,
            last_shrink_us: 0,
            first_arrival_us: None,
            stale_since: None,
            shrunk: 0,
            late: 0,
        }
    }

    /// The delay over the base now, microseconds.
    pub fn delay_us(&self) -> u64 {
        self.delay_us
    }

    /// A packet captured at `capture_us` (the sender's clock) plays at `capture_us`
    /// plus this, on the receiver's clock; `None` before any packet.
    pub fn offset_us(&self) -> Option<i64> {
        self.transits.base().map(|base| base + self.delay_us as i64)
    }

    /// A packet arrived at `now_us`, captured at `capture_us` (the sender's clock).
    pub fn push(
        &mut self,
        now_us: u64,
        sequence: u64,
        capture_us: u64,
        item: T,
    ) -> Result<(), Late> {
        let transit = now_us as i64 - capture_us as i64;
        self.transits.push(now_us, transit);
        self.first_arrival_us.get_or_insert(now_us);
        // Sound from before an outage, delivered when the link returns: seconds old,
        // and playing it would put the lesson seconds behind (then cut it short to
        // catch up). Unless the path itself got that much slower: after a second of
        // nothing else, its delay is the new base.
        if (transit - self.base()).max(0) as u64 > STALE_US {
            let since = *self.stale_since.get_or_insert(now_us);
            if now_us.saturating_sub(since) < REBASE_AFTER_US {
                self.late += 1;
                return Err(Late);
            }
            self.transits.keep_since(since);
            self.queueing.keep_since(since);
        }
        self.stale_since = None;
        // Attack: this packet's wait over the base, plus headroom, at once; but only
        // for the newest packet so far. One that comes after its successors was lost
        // and sent again a round trip later: waiting a round trip for every such
        // packet would cost a stall each time; its turn passes and the decoder
        // conceals its 20 ms instead.
        let newest = self.newest.is_none_or(|n| sequence > n);
        let mut due_us = None;
        if newest {
            self.newest = Some(sequence);
            self.queueing.push(now_us, transit);
            let extra = (transit - self.base()).max(0) as u64;
            let needed = extra + MARGIN_US;
            if needed > self.delay_us {
                // A rise that is a gap by itself means the sound is arriving far
                // slower than it plays: a link that fell under what was in flight,
                // whose queue lets one packet through every 100-150 ms for half a
                // second. Taken as it comes, each of those packets played alone
                // between gaps (four gaps at one drop); taken twice, the wait gets
                // ahead of the next ones and the same silence comes as one or two.
                // Smaller rises are jitter and are taken as they come: the
                // headroom is for the packets after this one, which plays as it
                // comes (holding it for the headroom too made 100 ms of extra
                // wait on a 250 kbit/s link a gap).
                let rise = needed - self.delay_us;
                let ahead = if rise >= BIG_RISE_US {
                    rise
                } else {
                    due_us = Some(now_us);
                    0
                };
                self.delay_us = (needed + ahead).min(MAX_DELAY_US);
            }
        }
        if self.next.is_some_and(|next| sequence < next) {
            self.late += 1;
            return Err(Late);
        }
        self.held.insert(
            sequence,
            Held {
                capture_us,
                due_us,
                item,
            },
        );
        Ok(())
    }

    /// The next packet whose time has come at `now_us`, if any.
    pub fn pop(&mut self, now_us: u64) -> Option<Release<T>> {
        let (&first, held) = self.held.first_key_value()?;
        if now_us < self.due(held) {
            return None;
        }
        let mut dropped = 0;
        // What dropping this packet saves: the time to the next one's capture (20 ms,
        // or 40 ms when the teacher packs the sound for a slow link).
        let mut captures = self.held.values().map(|h| h.capture_us);
        let step = match (captures.next(), captures.next()) {
            (Some(this), Some(next)) => Some(next.saturating_sub(this)),
            _ => None,
        };
        if let Some(step) = step
            && self.should_shrink(now_us, step)
        {
            // Drop this one; the next plays in its place, one packet sooner.
            self.held.pop_first()?;
            self.delay_us = self.delay_us.saturating_sub(step).max(MIN_DELAY_US);
            self.last_shrink_us = now_us;
            self.shrunk += 1;
            dropped = 1;
        }
        let (sequence, held) = self.held.pop_first()?;
        let expected = self.next.unwrap_or(first);
        self.next = Some(sequence + 1);
        Some(Release {
            item: held.item,
            skipped: sequence - expected - dropped,
            dropped,
        })
    }

    /// When the first held packet is due (Unix microseconds).
    pub fn deadline(&self) -> Option<u64> {
        self.held.first_key_value().map(|(_, held)| self.due(held))
    }

    fn due(&self, held: &Held<T>) -> u64 {
        let at = self.play_at(held.capture_us);
        held.due_us.map_or(at, |due| due.min(at))
    }

    fn play_at(&self, capture_us: u64) -> u64 {
        (capture_us as i64 + self.base() + self.delay_us as i64).max(0) as u64
    }

    fn base(&self) -> i64 {
        self.transits.base().unwrap_or(0)
    }

    /// The delay is a packet (`step`) or more above what the last few seconds needed.
    fn should_shrink(&self, now_us: u64, step: u64) -> bool {
        if now_us.saturating_sub(self.last_shrink_us) < SHRINK_EVERY_US
            || self
                .first_arrival_us
                .is_none_or(|first| now_us.saturating_sub(first) < JITTER_WINDOW_US)
        {
            return false;
        }
        let base = self.base();
        let worst = self
            .queueing
            .worst()
            .map_or(0, |worst| (worst - base).max(0) as u64);
        let wanted = (worst + MARGIN_US).clamp(MIN_DELAY_US, MAX_DELAY_US);
        self.delay_us >= wanted + step
    }
}

/// Recent transit times (arrival minus capture, on two different clocks, so only
/// differences matter) over a window of time. The smallest over [`BASE_WINDOW_US`] is
/// the path's own delay plus the clocks' offset: the base that waits and staleness
/// are measured from.
#[derive(Debug)]
pub struct Transits {
    span_us: u64,
    /// (arrival, transit), oldest first.
    recent: VecDeque<(u64, i64)>,
}

impl Default for Transits {
    /// Over [`BASE_WINDOW_US`], for a base.
    fn default() -> Self {
        Self::over(BASE_WINDOW_US)
    }
}

impl Transits {
    /// Transits of the last `span_us`.
    pub fn over(span_us: u64) -> Self {
        Self {
            span_us,
            recent: VecDeque::new(),
        }
    }

    /// Something arrived at `now_us` after `transit` microseconds.
    pub fn push(&mut self, now_us: u64, transit: i64) {
        self.recent.push_back((now_us, transit));
        while self
            .recent
            .front()
            .is_some_and(|&(at, _)| now_us.saturating_sub(at) > self.span_us)
        {
            self.recent.pop_front();
        }
    }

    /// The smallest recent transit; `None` before anything arrived.
    pub fn base(&self) -> Option<i64> {
        self.recent.iter().map(|&(_, t)| t).min()
    }

    /// The largest recent transit.
    pub fn worst(&self) -> Option<i64> {
        self.recent.iter().map(|&(_, t)| t).max()
    }

    /// Forget what arrived before `since_us` (the path changed then).
    pub fn keep_since(&mut self, since_us: u64) {
        self.recent.retain(|&(at, _)| at >= since_us);
    }
}

#[cfg(test)]
mod tests;
