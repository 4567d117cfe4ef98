//! Receiver reports as a moq-lite track, both ways.
//!
//! Lesson: each box publishes `classroom/<box>` with a `report` track (one JSON frame
//! per group, about four a second); the teacher watches `classroom/*` and reads them.
//! Return feed: the teacher publishes `teacher/feedback/<box>` the same way about the
//! box's `classroom/<box>/feed`. Riding on moq-lite keeps them working through a stock
//! moq-relay, and inside the tokens' scopes (a box writes `classroom/`, reads `teacher/`).

use moq_net::{Timestamp, broadcast, origin, track};
use tokio::sync::mpsc;

use super::{CLASSROOM_BROADCAST, TransportError};
use crate::abr::ReceiverReport;

pub const TRACK: &str = "report";
const PRIORITY: u8 = 250;

/// The broadcast name for box `id`'s reports about the lesson.
pub fn broadcast_name(id: &str) -> String {
    format!("{CLASSROOM_BROADCAST}/{id}")
}

/// Where the teacher reports about box `id`'s return feed.
pub fn feedback_name(id: &str) -> String {
    format!("{FEEDBACK_PREFIX}{id}")
}

pub const FEEDBACK_PREFIX: &str = "teacher/feedback/";

pub struct ReportPublisher {
    broadcast: broadcast::Producer,
    track: track::Producer,
    sequence: u64,
}

impl ReportPublisher {
    pub fn new(origin: &origin::Producer, box_id: &str) -> Result<Self, TransportError> {
        Self::at(origin, &broadcast_name(box_id))
    }

    /// Reports on a broadcast of their own at `path`.
    pub fn at(origin: &origin::Producer, path: &str) -> Result<Self, TransportError> {
        let broadcast = origin.create_broadcast(path)?;
        let track =
            broadcast.create_track(TRACK, track::Info::default().with_priority(PRIORITY))?;
        broadcast.announce(Default::default())?;
        Ok(Self {
            broadcast,
            track,
            sequence: 0,
        })
    }

    pub fn send(&mut self, report: &ReceiverReport) -> Result<(), TransportError> {
        let mut group = self.track.append_group()?;
        self.sequence += 1;
        let ts = Timestamp::from_scale(self.sequence * 250, 1000).unwrap_or(Timestamp::ZERO);
        group.write_frame(ts, serde_json::to_vec(report).expect("report serializes"))?;
        group.finish()?;
        Ok(())
    }
}

impl Drop for ReportPublisher {
    fn drop(&mut self) {
        let _ = self.track.finish();
        self.broadcast.close();
    }
}

/// Watch `classroom/*` in `origin` and forward every box's reports as (box, report)
/// until the origin closes.
pub async fn watch_reports(origin: origin::Producer, out: mpsc::Sender<(String, ReceiverReport)>) {
    watch_reports_under(origin, &format!("{CLASSROOM_BROADCAST}/"), out).await
}

/// Watch the broadcasts `<prefix><key>` (one path segment) and forward their reports as
/// (key, report).
pub async fn watch_reports_under(
    origin: origin::Producer,
    prefix: &str,
    out: mpsc::Sender<(String, ReceiverReport)>,
) {
    let consumer = origin.consume();
    let mut announced = consumer.announced();
    let mut readers: std::collections::HashMap<String, tokio::task::JoinHandle<()>> =
        Default::default();
    while let Some(update) = announced.next().await {
        let path = update.prefix.as_str().to_string();
        // One segment: `classroom/<box>`, not `classroom/<box>/feed`.
        let Some(box_id) = path
            .strip_prefix(prefix)
            .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            .map(str::to_string)
        else {
            continue;
        };
        if let Some(old) = readers.remove(&box_id) {
            old.abort();
        }
        if !update.kind.is_active() {
            continue;
        }
        let Ok(broadcast) = consumer.request_broadcast(path.as_str()).await else {
            continue;
        };
        let out = out.clone();
        let id = box_id.clone();
        readers.insert(
            box_id,
            tokio::spawn(async move {
                if let Err(e) = read_reports(&broadcast, &id, &out).await {
                    tracing::debug!(box_id = %id, error = %e, "report track ended");
                }
            }),
        );
    }
    for (_, r) in readers {
        r.abort();
    }
}

async fn read_reports(
    broadcast: &broadcast::Consumer,
    box_id: &str,
    out: &mpsc::Sender<(String, ReceiverReport)>,
) -> Result<(), TransportError> {
    let mut track = broadcast
        .track(TRACK)?
        .subscribe(moq_net::track::Subscription::default().with_priority(PRIORITY))
        .await?;
    while let Some(mut group) = track.recv_group().await? {
        loop {
            let frame = match group.read_frame().await {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                // One report lost on the way, not the track: after an outage the
                // relay gives up the reports queued through it as older than the
                // newest ("old"). Ending here left the teacher's controller with no
                // reports from that box for the rest of the lesson, its picture held
                // at the outage's 400 kbit/s on a 1 Mbit/s link.
                Err(e) => {
                    tracing::debug!(%box_id, error = %e, "receiver report lost");
                    break;
                }
            };
            match serde_json::from_slice::<ReceiverReport>(&frame.payload) {
                Ok(report) => {
                    if out.send((box_id.to_string(), report)).await.is_err() {
                        return Ok(());
                    }
                }
                Err(e) => tracing::warn!(%box_id, error = %e, "malformed receiver report ignored"),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A report given up on the way (as the relay gives up the ones that stalled in an
    /// outage once newer ones come) is lost; the ones after it still reach the
    /// controller.
    #[tokio::test]
    async fn reports_go_on_after_a_lost_one() {
        let origin = crate::roles::spawn_origin();
        let (tx, mut rx) = mpsc::channel(8);
        tokio::spawn(watch_reports(origin.clone(), tx));
        let mut reports = ReportPublisher::new(&origin, "box1").unwrap();
        let report = |kbps| ReceiverReport {
            received_kbps: kbps,
            ..Default::default()
        };
        // Until the watcher has subscribed, reports may go unread: send until one comes.
        let first = loop {
            reports.send(&report(100.0)).unwrap();
            if let Ok(Some(got)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await
            {
                break got;
            }
        };
        assert_eq!(first, ("box1".to_string(), report(100.0)));

        // A report whose bytes stall on the way (its group open, its frame not
        // there), then a newer one: the stalled read ends with "old".
        let mut stalled = reports.track.append_group().unwrap();
        let mut frame = stalled
            .create_frame(moq_net::frame::Info {
                size: 100,
                timestamp: Timestamp::ZERO,
            })
            .unwrap();
        frame.write(b"{".to_vec()).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        reports.send(&report(200.0)).unwrap();
        let (_, got) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the next report within 10 s")
            .expect("the watcher still runs");
        assert_eq!(got.received_kbps, 200.0);
    }
}
