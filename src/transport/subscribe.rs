//! moq-lite groups in, Frames out, always at the live edge.
//!
//! Video: a newer group replaces the one being read: the rest of an old GOP is stale by the
//! time a new keyframe exists, so the picture jumps forward instead of drifting behind.
//! Groups older than the latency budget are skipped by moq-net's `max_age` (sender,
//! relay and here).

use std::time::Duration;

use moq_net::{broadcast, group, track};
use tokio::sync::mpsc;

use super::{TransportError, catalog::Catalog, publish};
use crate::{
    frame::{Frame, TrackKind},
    stats::LessonStats,
};

/// Read the catalog (the latest group of the catalog track).
pub async fn read_catalog(broadcast: &broadcast::Consumer) -> Result<Catalog, TransportError> {
    let mut track = broadcast
        .track(super::catalog::TRACK)?
        .subscribe(moq_net::track::Subscription::default().with_priority(publish::CATALOG_PRIORITY))
        .await?;
    let mut group = track.recv_group().await?.ok_or_else(|| {
        TransportError::Catalog("the catalog track ended before it was sent".into())
    })?;
    let frame = group
        .read_frame()
        .await?
        .ok_or_else(|| TransportError::Catalog("empty catalog group".into()))?;
    Catalog::parse(&frame.payload)
}

/// Subscribe to one media track and forward its frames until it ends or errors.
pub async fn forward_track(
    broadcast: &broadcast::Consumer,
    kind: TrackKind,
    budget: Duration,
    out: mpsc::Sender<Frame>,
    stats: &LessonStats,
) -> Result<(), TransportError> {
    let priority = match kind {
        TrackKind::Video => publish::VIDEO_PRIORITY,
        TrackKind::Audio => publish::AUDIO_PRIORITY,
    };
    let subscription = moq_net::track::Subscription::default()
        .with_priority(priority)
        .with_max_age(budget);
    let track: track::Subscriber = broadcast
        .track(kind.track_name())?
        .subscribe(subscription)
        .await?;
    let mut forward = Forwarder {
        kind,
        out,
        stats,
        last_sequence: None,
    };
    match kind {
        TrackKind::Video => forward.video(track).await,
        TrackKind::Audio => forward.audio(track).await,
    }
}

struct Forwarder<'a> {
    kind: TrackKind,
    out: mpsc::Sender<Frame>,
    stats: &'a LessonStats,
    last_sequence: Option<u64>,
}

impl Forwarder<'_> {
    /// Video: a newer group (a new keyframe) supersedes the GOP being read.
    async fn video(&mut self, mut track: track::Subscriber) -> Result<(), TransportError> {
        let mut current: Option<group::Consumer> = None;
        loop {
            tokio::select! {
                biased;
                next = track.recv_group() => match next? {
                    Some(group) => {
                        self.count_gap(group.sequence);
                        current = Some(group);
                    }
                    None => return Ok(()),
                },
                frame = read_next(&mut current) => match frame {
                    Ok(Some(frame)) => self.pass(frame.payload),
                    // The group is complete, or was cut short (reset by the sender as stale).
                    Ok(None) | Err(_) => current = None,
                },
            }
        }
    }

    /// Audio: every group is one packet and none supersedes another. The relay sends
    /// the newest group first when several wait, so packets can arrive out of order,
    /// and a lost one waits a round trip for its retransmission. They are read side by
    /// side and put back in order by a short [`Reorder`] buffer, which gives up on a
    /// missing packet after [`AUDIO_HOLD`] (the decoder's loss concealment covers it).
    async fn audio(&mut self, mut track: track::Subscriber) -> Result<(), TransportError> {
        use futures::stream::{FuturesUnordered, StreamExt};
        let mut reading = FuturesUnordered::new();
        let mut reorder = Reorder::new(AUDIO_HOLD);
        loop {
            let deadline = reorder.deadline().map(tokio::time::Instant::from_std);
            tokio::select! {
                next = track.recv_group() => match next? {
                    Some(mut group) => {
                        let sequence = group.sequence;
                        reading.push(async move { (sequence, group.read_frame().await) });
                    }
                    None => return Ok(()),
                },
                Some((sequence, frame)) = reading.next(), if !reading.is_empty() => {
                    if let Ok(Some(frame)) = frame
                        && reorder.push(std::time::Instant::now(), sequence, frame.payload).is_err()
                    {
                        self.stats.record_dropped(self.kind);
                    }
                }
                _ = sleep_until(deadline) => {}
            }
            while let Some((payload, skipped)) = reorder.pop(std::time::Instant::now()) {
                for _ in 0..skipped {
                    self.stats.record_group_skipped(self.kind);
                }
                self.pass(payload);
            }
        }
    }

    /// A gap in sequence numbers: groups skipped as too old (by us, the relay or the
    /// sender) never arrive at all.
    fn count_gap(&mut self, sequence: u64) {
        if let Some(last) = self.last_sequence {
            for _ in last + 1..sequence {
                self.stats.record_group_skipped(self.kind);
            }
        }
        self.last_sequence = Some(self.last_sequence.map_or(sequence, |l| l.max(sequence)));
    }

    fn pass(&mut self, payload: bytes::Bytes) {
        let size = payload.len();
        let frame = match Frame::decode(self.kind, payload) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::warn!(track = self.kind.track_name(), error = %e, "bad frame skipped");
                self.stats.record_dropped(self.kind);
                return;
            }
        };
        self.stats.record_received(self.kind, size, &frame);
        // A full queue means the decoder is behind: drop rather than add latency (the
        // next keyframe heals the picture).
        if self.out.try_send(frame).is_err() {
            self.stats.record_dropped(self.kind);
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How long audio waits for a missing packet before playing on without it: about
/// two packets, well inside the 100 ms that a listener hears as a break.
pub const AUDIO_HOLD: Duration = Duration::from_millis(50);

/// Puts numbered packets back in order, waiting at most `hold` for a missing one.
/// Sans-IO: time is passed in.
#[derive(Debug)]
pub struct Reorder<T> {
    hold: Duration,
    /// The next sequence number to release; `None` until the first packet.
    next: Option<u64>,
    held: std::collections::BTreeMap<u64, (std::time::Instant, T)>,
}

/// The packet came after newer ones were already released.
#[derive(Debug, PartialEq, Eq)]
pub struct Late;

impl<T> Reorder<T> {
    pub fn new(hold: Duration) -> Self {
        Self {
            hold,
            next: None,
            held: Default::default(),
        }
    }

    pub fn push(&mut self, now: std::time::Instant, sequence: u64, item: T) -> Result<(), Late> {
        if self.next.is_some_and(|next| sequence < next) {
            return Err(Late);
        }
        self.held.insert(sequence, (now, item));
        Ok(())
    }

    /// The next packet in order, with how many missing ones were given up to reach it.
    pub fn pop(&mut self, now: std::time::Instant) -> Option<(T, u64)> {
        let (&first, &(arrived, _)) = self.held.first_key_value()?;
        let expected = self.next.unwrap_or(first);
        let in_order = first == expected;
        if !in_order && now.saturating_duration_since(arrived) < self.hold {
            return None;
        }
        let (_, item) = self.held.remove(&first)?;
        self.next = Some(first + 1);
        Some((item, first - expected))
    }

    /// When the oldest held packet stops waiting for the ones before it.
    pub fn deadline(&self) -> Option<std::time::Instant> {
        self.held
            .first_key_value()
            .map(|(_, (arrived, _))| *arrived + self.hold)
    }
}

/// Next frame of the current group; pending forever when there is none.
async fn read_next(
    current: &mut Option<group::Consumer>,
) -> Result<Option<moq_net::frame::Frame>, moq_net::Error> {
    match current {
        Some(group) => group.read_frame().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn drain(r: &mut Reorder<u64>, now: Instant) -> Vec<(u64, u64)> {
        std::iter::from_fn(|| r.pop(now)).collect()
    }

    #[test]
    fn in_order_packets_pass_at_once() {
        let t = Instant::now();
        let mut r = Reorder::new(AUDIO_HOLD);
        for seq in 5..8 {
            r.push(t, seq, seq).unwrap();
            assert_eq!(drain(&mut r, t), vec![(seq, 0)]);
        }
    }

    #[test]
    fn a_swapped_pair_is_put_back_in_order() {
        let t = Instant::now();
        let mut r = Reorder::new(AUDIO_HOLD);
        r.push(t, 1, 1).unwrap();
        assert_eq!(drain(&mut r, t), vec![(1, 0)]);
        r.push(t, 3, 3).unwrap();
        assert_eq!(drain(&mut r, t), vec![], "3 waits for 2");
        let later = t + Duration::from_millis(10);
        r.push(later, 2, 2).unwrap();
        assert_eq!(drain(&mut r, later), vec![(2, 0), (3, 0)]);
    }

    #[test]
    fn a_missing_packet_is_given_up_after_the_hold_and_is_late_if_it_comes() {
        let t = Instant::now();
        let mut r = Reorder::new(AUDIO_HOLD);
        r.push(t, 1, 1).unwrap();
        drain(&mut r, t);
        r.push(t, 3, 3).unwrap();
        r.push(t + Duration::from_millis(20), 4, 4).unwrap();
        assert_eq!(r.deadline(), Some(t + AUDIO_HOLD));
        assert_eq!(
            drain(&mut r, t + AUDIO_HOLD - Duration::from_millis(1)),
            vec![]
        );
        assert_eq!(drain(&mut r, t + AUDIO_HOLD), vec![(3, 1), (4, 0)]);
        assert_eq!(r.push(t + AUDIO_HOLD, 2, 2), Err(Late));
        assert_eq!(r.deadline(), None);
    }
}
