//! moq-lite groups in, Frames out, always at the live edge.
//!
//! A newer group replaces the one being read: the rest of an old GOP is stale by the
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
    let mut group = track
        .recv_group()
        .await?
        .ok_or_else(|| TransportError::Catalog("the catalog track ended before it was sent".into()))?;
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
    let mut track: track::Subscriber = broadcast.track(kind.track_name())?.subscribe(subscription).await?;
    let mut current: Option<group::Consumer> = None;
    let mut last_sequence: Option<u64> = None;
    loop {
        tokio::select! {
            // Prefer a newer group: it supersedes the one being read.
            biased;
            next = track.recv_group() => match next? {
                Some(group) => {
                    // A gap in sequence numbers: groups skipped as too old (by us, the
                    // relay or the sender) never arrive at all.
                    if let Some(last) = last_sequence {
                        for _ in last + 1..group.sequence {
                            stats.record_group_skipped(kind);
                        }
                    }
                    last_sequence = Some(last_sequence.map_or(group.sequence, |l| l.max(group.sequence)));
                    current = Some(group);
                }
                None => return Ok(()),
            },
            frame = read_next(&mut current) => match frame {
                Ok(Some(frame)) => {
                    let size = frame.payload.len();
                    match Frame::decode(kind, frame.payload) {
                        Ok(frame) => {
                            stats.record_received(kind, size, &frame);
                            // A full queue means the decoder is behind: drop rather than
                            // add latency (the next keyframe heals the picture).
                            if out.try_send(frame).is_err() {
                                stats.record_dropped(kind);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(track = kind.track_name(), error = %e, "bad frame skipped");
                            stats.record_dropped(kind);
                        }
                    }
                }
                // The group is complete, or was cut short (reset by the sender as stale).
                Ok(None) | Err(_) => current = None,
            },
        }
    }
}

/// Next frame of the current group; pending forever when there is none.
async fn read_next(current: &mut Option<group::Consumer>) -> Result<Option<moq_net::frame::Frame>, moq_net::Error> {
    match current {
        Some(group) => group.read_frame().await,
        None => std::future::pending().await,
    }
}
