//! moq-lite groups in, Frames out, always at the live edge.
//!
//! Video: a newer group replaces the one being read: the rest of an old GOP is stale by the
//! time a new keyframe exists, so the picture jumps forward instead of drifting behind.
//! Groups older than the latency budget are skipped by moq-net's `max_age` (sender,
//! relay and here).

use std::time::Duration;

use moq_net::{broadcast, group, track};
use tokio::sync::mpsc;

use super::{
    TransportError,
    catalog::Catalog,
    lipsync::LipSync,
    playout::{Playout, Transits},
    publish,
};
use crate::{
    frame::{Frame, TrackKind, unix_micros},
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

/// Subscribe to a track a teacher from before it was added does not have: None (and
/// a debug line) when it is not there.
async fn optional_track(
    broadcast: &broadcast::Consumer,
    name: &str,
    subscription: moq_net::track::Subscription,
) -> Option<track::Subscriber> {
    let track = async { broadcast.track(name)?.subscribe(subscription).await };
    match track.await {
        Ok(track) => Some(track),
        Err(e) => {
            tracing::debug!(track = name, error = %e, "no such track from this teacher");
            None
        }
    }
}

/// Read the lesson's padding (see [`crate::abr::probe`]) and throw it away: its bytes
/// count in what the box's link delivered, which is all a probe asks. A teacher from
/// before probing has no such track; that is not an error.
pub async fn drain_probe(broadcast: &broadcast::Consumer) {
    let subscription = moq_net::track::Subscription::default()
        .with_priority(publish::PROBE_PRIORITY)
        .with_max_age(publish::PROBE_MAX_AGE);
    let Some(mut track) = optional_track(broadcast, publish::PROBE_TRACK, subscription).await
    else {
        return;
    };
    while let Ok(Some(mut group)) = track.recv_group().await {
        while let Ok(Some(_)) = group.read_frame().await {}
    }
}

/// Which video track `box_id` plays, as the teacher says on its
/// [`publish::LAYERS_TRACK`] (see [`crate::abr::Layer`]): sent on `track`, which starts
/// at the main one. A teacher from before simulcast has no such track: the main one
/// it stays.
pub async fn follow_layers(
    broadcast: &broadcast::Consumer,
    box_id: &str,
    track: tokio::sync::watch::Sender<&'static str>,
) {
    let subscription =
        moq_net::track::Subscription::default().with_priority(publish::CATALOG_PRIORITY);
    let Some(mut layers) = optional_track(broadcast, publish::LAYERS_TRACK, subscription).await
    else {
        return;
    };
    while let Ok(Some(mut group)) = layers.recv_group().await {
        let Ok(Some(frame)) = group.read_frame().await else {
            continue;
        };
        match serde_json::from_slice::<publish::Layers>(&frame.payload) {
            Ok(layers) => {
                let layer = if layers.fast.iter().any(|id| id == box_id) {
                    crate::abr::Layer::Fast
                } else {
                    crate::abr::Layer::Main
                };
                let name = publish::video_track(layer);
                track.send_if_modified(|playing| std::mem::replace(playing, name) != name);
            }
            Err(e) => tracing::warn!(error = %e, "bad layers message from the teacher ignored"),
        }
    }
}

/// Subscribe to one media track and forward its frames until it ends or errors.
pub async fn forward_track(
    broadcast: &broadcast::Consumer,
    kind: TrackKind,
    budget: Duration,
    out: mpsc::Sender<Frame>,
    stats: &LessonStats,
) -> Result<(), TransportError> {
    match kind {
        TrackKind::Video => forward_video(broadcast, None, budget, out, stats).await,
        TrackKind::Audio => {
            let track = subscribe(broadcast, kind.track_name(), budget).await?;
            forward_audio(Sink { kind, out, stats }, track).await
        }
    }
}

/// Forward the pictures of the video track `layers` names (the main one when None),
/// moving to another when it says so.
pub async fn forward_video(
    broadcast: &broadcast::Consumer,
    layers: Option<tokio::sync::watch::Receiver<&'static str>>,
    budget: Duration,
    out: mpsc::Sender<Frame>,
    stats: &LessonStats,
) -> Result<(), TransportError> {
    let kind = TrackKind::Video;
    let name = layers
        .as_ref()
        .map_or(kind.track_name(), |layers| *layers.borrow());
    let track = subscribe(broadcast, name, budget).await?;
    let mut video = VideoForwarder {
        sink: Sink { kind, out, stats },
        budget,
        last_sequence: None,
        lip_sync: LipSync::default(),
        transits: Transits::default(),
    };
    video.run(broadcast, track, name, layers).await
}

/// Subscribe to the media track `name` with `budget` for its groups' age.
async fn subscribe(
    broadcast: &broadcast::Consumer,
    name: &str,
    budget: Duration,
) -> Result<track::Subscriber, TransportError> {
    let priority = if name == TrackKind::Audio.track_name() {
        publish::AUDIO_PRIORITY
    } else {
        publish::VIDEO_PRIORITY
    };
    let subscription = moq_net::track::Subscription::default()
        .with_priority(priority)
        .with_max_age(budget);
    Ok(broadcast.track(name)?.subscribe(subscription).await?)
}

/// Where one track's frames go, counted on the way.
struct Sink<'a> {
    kind: TrackKind,
    out: mpsc::Sender<Frame>,
    stats: &'a LessonStats,
}

struct VideoForwarder<'a> {
    sink: Sink<'a>,
    /// How long an old GOP may keep playing once a newer group exists.
    budget: Duration,
    last_sequence: Option<u64>,
    /// Pictures wait here for the sound captured with them.
    lip_sync: LipSync<Frame>,
    /// How long pictures took to come, to tell a stale one (see [`STALE_US`]).
    transits: Transits,
}

/// A picture this much later than the quickest lately waited in the link's queue
/// through an outage: its group is given up rather than shown seconds late (the
/// next keyframe comes within a second). A drop's own backlog stays under it.
const STALE_US: i64 = 2_000_000;

impl VideoForwarder<'_> {
    /// A newer group (a new keyframe) supersedes the GOP being read, once its
    /// keyframe has arrived whole. Until then the old GOP keeps playing: switching
    /// when the new group merely opens would show nothing for as long as a keyframe
    /// takes to cross a slow link (a quarter of a second at 500 kbit/s) and throw
    /// away the old GOP's last frames that were already on their way. But never for
    /// longer than the latency budget: after an outage the old GOP is a backlog, and
    /// reading it on would keep its stream (and the bandwidth the new keyframe
    /// needs) busy with pictures seconds old. Dropping it cancels its stream.
    ///
    /// Moving to another track (another encoding, see [`crate::abr::Layer`]) works
    /// the same way: the new track's first group waits for its keyframe while the
    /// old track's group plays on, and takes over once its keyframe is in; the old
    /// track goes with it.
    async fn run(
        &mut self,
        broadcast: &broadcast::Consumer,
        mut track: track::Subscriber,
        mut playing: &'static str,
        mut layers: Option<tokio::sync::watch::Receiver<&'static str>>,
    ) -> Result<(), TransportError> {
        let mut current: Option<group::Consumer> = None;
        // The newest group waiting for its keyframe, and since when `current` has
        // been superseded (kept when a still newer group replaces the waiting one).
        let mut next: Option<(group::Consumer, tokio::time::Instant)> = None;
        // A subscription to the track to move to, on its way.
        type Subscribing<'b> = std::pin::Pin<
            Box<
                dyn std::future::Future<Output = Result<track::Subscriber, TransportError>>
                    + Send
                    + 'b,
            >,
        >;
        let mut subscribing: Option<(&'static str, Subscribing<'_>)> = None;
        // Until a group of the new track plays, `current` is the old track's (whose
        // sequence numbers say nothing of the new one's), and the old subscription
        // is kept so that it plays on.
        let mut old_track: Option<track::Subscriber> = None;
        loop {
            let give_up = next.as_ref().map(|(_, since)| *since + self.budget);
            let moving = old_track.is_some();
            tokio::select! {
                biased;
                group = track.recv_group() => match group? {
                    Some(group) => {
                        tracing::trace!(sequence = group.sequence, current = ?current.as_ref().map(|g| g.sequence), "video group arrives");
                        self.count_gap(group.sequence);
                        // The relay sends the newest group first, so an older one can
                        // open after it: it must not take the newer one's place.
                        let newest = next
                            .as_ref()
                            .map(|(g, _)| g.sequence)
                            .or(current.as_ref().filter(|_| !moving).map(|g| g.sequence));
                        if newest.is_some_and(|n| group.sequence <= n) {
                            continue;
                        }
                        if current.is_none() {
                            current = Some(group);
                            old_track = None;
                        } else {
                            let since = next
                                .take()
                                .map_or_else(tokio::time::Instant::now, |(_, since)| since);
                            next = Some((group, since));
                        }
                    }
                    None => return Ok(()),
                },
                keyframe = read_next(next.as_mut().map(|(group, _)| group)) => {
                    let waiting = next.take().map(|(group, _)| group);
                    // Otherwise empty, or reset by the sender as stale before its keyframe.
                    tracing::trace!(sequence = ?waiting.as_ref().map(|g| g.sequence), ok = matches!(keyframe, Ok(Some(_))), "waiting group's keyframe");
                    if let Ok(Some(frame)) = keyframe
                        && self.pass(frame.payload)
                    {
                        current = waiting;
                        old_track = None;
                    }
                }
                frame = read_next(current.as_mut()) => match frame {
                    Ok(Some(frame)) => if !self.pass(frame.payload) {
                        tracing::debug!(sequence = ?current.as_ref().map(|g| g.sequence), "stale group given up");
                        current = next.take().map(|(group, _)| group);
                        old_track = None;
                    },
                    // The group is complete, or was cut short (reset by the sender as
                    // stale); a waiting group takes over when its keyframe is in.
                    Ok(None) | Err(_) => {
                        tracing::trace!(sequence = ?current.as_ref().map(|g| g.sequence), error = ?frame.err(), "current group ends");
                        current = next.take().map(|(group, _)| group);
                        old_track = None;
                    }
                },
                _ = sleep_until(give_up) => {
                    tracing::trace!(sequence = ?current.as_ref().map(|g| g.sequence), "current group given up");
                    current = next.take().map(|(group, _)| group);
                    old_track = None;
                }
                Ok(()) = changed(layers.as_mut()) => {
                    let name = *layers.as_mut().expect("changed").borrow_and_update();
                    if name != playing && subscribing.as_ref().is_none_or(|(n, _)| *n != name) {
                        tracing::info!(from = playing, to = name, "moving to another encoding");
                        subscribing = Some((name, Box::pin(subscribe(broadcast, name, self.budget))));
                    }
                }
                subscribed = pending_on(subscribing.as_mut().map(|(_, s)| s)) => {
                    let (name, _) = subscribing.take().expect("subscribing");
                    match subscribed {
                        Ok(new) => {
                            old_track = Some(std::mem::replace(&mut track, new));
                            playing = name;
                            // A group of the old track waiting for its keyframe is
                            // no use now; the one playing goes on until the new
                            // track's first keyframe is in.
                            next = None;
                            self.last_sequence = None;
                        }
                        Err(e) => tracing::warn!(track = name, error = %e, "cannot move to another encoding"),
                    }
                }
                _ = sleep_until(self.lip_sync.deadline().map(instant_at)) => {}
            }
            while let Some(frame) = self.lip_sync.pop(unix_micros()) {
                self.sink.deliver(frame);
            }
        }
    }

    /// A gap in sequence numbers: groups skipped as too old (by us, the relay or the
    /// sender) never arrive at all.
    fn count_gap(&mut self, sequence: u64) {
        if let Some(last) = self.last_sequence {
            for _ in last + 1..sequence {
                self.sink.stats.record_group_skipped(self.sink.kind);
            }
        }
        self.last_sequence = Some(self.last_sequence.map_or(sequence, |l| l.max(sequence)));
    }

    /// A picture that arrived: it plays with its sound (see [`LipSync`]). False when
    /// it is stale (see [`STALE_US`]) and was dropped: the rest of its group is too.
    fn pass(&mut self, payload: bytes::Bytes) -> bool {
        let Some(frame) = self.sink.decode(payload) else {
            return true;
        };
        let now = unix_micros();
        let transit = now as i64 - frame.capture_us as i64;
        self.transits.push(now, transit);
        if self
            .transits
            .base()
            .is_some_and(|base| transit - base > STALE_US)
        {
            self.sink.stats.record_dropped(self.sink.kind);
            return false;
        }
        let sound = self.sink.stats.sound_offset();
        self.lip_sync.push(now, frame.capture_us, sound, frame);
        true
    }
}

impl Sink<'_> {
    /// Parse one received frame (counted as received); a bad one is counted and skipped.
    fn decode(&mut self, payload: bytes::Bytes) -> Option<Frame> {
        let size = payload.len();
        match Frame::decode(self.kind, payload) {
            Ok(frame) => {
                self.stats.record_received(self.kind, size, &frame);
                Some(frame)
            }
            Err(e) => {
                tracing::warn!(track = self.kind.track_name(), error = %e, "bad frame skipped");
                self.stats.record_dropped(self.kind);
                None
            }
        }
    }

    fn deliver(&mut self, frame: Frame) {
        // A full queue means the decoder is behind: drop rather than add latency (the
        // next keyframe heals the picture).
        if self.out.try_send(frame).is_err() {
            self.stats.record_dropped(self.kind);
        }
    }
}

/// Audio: every group is one packet and none supersedes another. The relay sends
/// the newest group first when several wait, so packets can arrive out of order,
/// and a lost one waits a round trip for its retransmission. They are read side by
/// side and released in order, each at its turn, by the [`Playout`] buffer, whose
/// delay follows the link's jitter (a missing packet is given up at its turn: the
/// decoder's loss concealment covers it).
async fn forward_audio(
    mut sink: Sink<'_>,
    mut track: track::Subscriber,
) -> Result<(), TransportError> {
    use futures::stream::{FuturesUnordered, StreamExt};
    let mut reading = FuturesUnordered::new();
    let mut playout = Playout::new();
    loop {
        let deadline = playout.deadline().map(instant_at);
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
                    && let Some(frame) = sink.decode(frame.payload)
                    && playout.push(unix_micros(), sequence, frame.capture_us, frame).is_err()
                {
                    sink.stats.record_dropped(sink.kind);
                }
            }
            _ = sleep_until(deadline) => {}
        }
        while let Some(release) = playout.pop(unix_micros()) {
            for _ in 0..release.skipped {
                sink.stats.record_group_skipped(sink.kind);
            }
            for _ in 0..release.dropped {
                sink.stats.record_dropped(sink.kind);
            }
            sink.deliver(release.item);
        }
        sink.stats
            .set_audio_delay(Duration::from_micros(playout.delay_us()));
        sink.stats.set_sound_offset(playout.offset_us());
    }
}

/// The tokio instant of a Unix time in microseconds.
fn instant_at(at_us: u64) -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_micros(at_us.saturating_sub(unix_micros()))
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The next change of `layers`; pending forever when there is none to follow.
async fn changed(
    layers: Option<&mut tokio::sync::watch::Receiver<&'static str>>,
) -> Result<(), tokio::sync::watch::error::RecvError> {
    match layers {
        Some(layers) => layers.changed().await,
        None => std::future::pending().await,
    }
}

/// `future`'s output; pending forever when there is none.
async fn pending_on<F: std::future::Future + Unpin>(future: Option<&mut F>) -> F::Output {
    match future {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

/// Next frame of `group`; pending forever when there is none.
async fn read_next(
    group: Option<&mut group::Consumer>,
) -> Result<Option<moq_net::frame::Frame>, moq_net::Error> {
    match group {
        Some(group) => group.read_frame().await,
        None => std::future::pending().await,
    }
}
