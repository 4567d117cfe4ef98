//! GStreamer only (never QUIC): capture + encode on the teacher, decode + display in
//! the classroom, and the capability probe that picks a pipeline profile.
//!
//! In (teacher): a camera and microphone, or test sources. Out: [`Frame`]s.
//! In (classroom): [`Frame`]s. Out: pictures on the display, sound on the speakers, and
//! per-frame glass-to-glass latency in [`LessonStats`](crate::stats::LessonStats).
//!
//! [`Frame`]: crate::frame::Frame

pub mod baseline;
pub mod capture;
pub mod devices;
pub mod display;
pub mod encoder;
pub mod keyframe_clock;
pub mod layer;
pub mod pipeline;
pub mod probe;
pub mod rebroadcast;
pub mod slate;

use gstreamer as gst;
use gstreamer::prelude::*;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("GStreamer could not start: {0}")]
    Init(String),
    #[error("pipeline file {path}: {message}")]
    Description { path: String, message: String },
    #[error("cannot build pipeline `{profile}/{role}`: {message}")]
    Build {
        profile: String,
        role: String,
        message: String,
    },
    #[error("pipeline has no element named `{0}`")]
    MissingElement(&'static str),
    #[error("pipeline would not start: {0}")]
    State(String),
    #[error("cannot change the video encoder: {0}")]
    Swap(String),
    #[error("no usable pipeline profile: {0}")]
    NoProfile(String),
    #[error("pipeline error from {source_name}: {message}")]
    Runtime {
        source_name: String,
        message: String,
    },
    #[error("too busy: {0}")]
    Busy(String),
}

/// The speakers' echo probe, which the microphone's `webrtcdsp` finds by name.
pub const ECHO_PROBE_NAME: &str = "classbox-echo";

/// Initialise GStreamer once per process.
pub fn init() -> Result<(), MediaError> {
    gst::init().map_err(|e| MediaError::Init(e.to_string()))
}

/// Set a pipeline's state without blocking the async runtime (state changes can wait
/// on devices and threads).
pub async fn set_state(pipeline: &gst::Pipeline, state: gst::State) -> Result<(), MediaError> {
    let p = pipeline.clone();
    tokio::task::spawn_blocking(move || p.set_state(state))
        .await
        .map_err(|e| MediaError::State(e.to_string()))?
        .map(|_| ())
        .map_err(|_| {
            MediaError::State(format!(
                "could not change to {state:?}; see the GStreamer error above"
            ))
        })
}

/// Log bus errors and warnings until the pipeline goes away; the first error is
/// reported on `errors` so the owner can react (fallback, restart).
pub fn watch_bus(
    pipeline: &gst::Pipeline,
    label: &'static str,
    errors: Option<tokio::sync::mpsc::UnboundedSender<MediaError>>,
) -> tokio::task::JoinHandle<()> {
    use futures::StreamExt;
    let bus = pipeline.bus().expect("a pipeline has a bus");
    let mut messages = bus.stream();
    tokio::spawn(async move {
        while let Some(msg) = messages.next().await {
            use gst::MessageView;
            match msg.view() {
                MessageView::Error(e) => {
                    let source_name = e
                        .src()
                        .map(|s| s.path_string().to_string())
                        .unwrap_or_default();
                    let message = format!("{} ({})", e.error(), e.debug().unwrap_or_default());
                    tracing::error!(pipeline = label, source = %source_name, %message, "pipeline error");
                    if let Some(tx) = &errors {
                        let _ = tx.send(MediaError::Runtime {
                            source_name,
                            message,
                        });
                    }
                }
                MessageView::Warning(w) => {
                    tracing::warn!(pipeline = label, warning = %w.error(), "pipeline warning");
                }
                MessageView::Eos(_) => {
                    tracing::debug!(pipeline = label, "end of stream");
                }
                _ => {}
            }
        }
    })
}
