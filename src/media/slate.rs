//! The classroom display while no lesson runs: who this classroom is, where its page
//! is, and how the link is, so whoever walks in knows what the box is doing.

use std::collections::BTreeMap;

use gstreamer as gst;
use gstreamer::prelude::*;

use super::{MediaError, display::Output, pipeline, probe::Profile};

/// A running slate. Dropping it frees the screen (for the lesson's display).
pub struct Slate {
    pipeline: gst::Pipeline,
    text: gst::Element,
    _bus: tokio::task::JoinHandle<()>,
}

impl Slate {
    pub async fn start(profile: &Profile, output: Output, text: &str) -> Result<Self, MediaError> {
        let sink = match output {
            Output::Window => format!("{} sync=false", profile.window_sink),
            Output::Headless => "fakesink name=video_sink sync=false".into(),
        };
        let vars = BTreeMap::from([("VIDEO_SINK", sink)]);
        let pipeline = pipeline::build(None, "lan", "slate", &vars)?;
        let text_element: gst::Element = pipeline::element(&pipeline, "slate_text")?;
        text_element.set_property("text", text);
        let bus = super::watch_bus(&pipeline, "classroom-slate", None);
        super::set_state(&pipeline, gst::State::Playing).await?;
        Ok(Self {
            pipeline,
            text: text_element,
            _bus: bus,
        })
    }

    pub fn set_text(&self, text: &str) {
        if self.text() != text {
            self.text.set_property("text", text);
        }
    }

    /// What the slate shows now.
    pub fn text(&self) -> String {
        self.text.property::<String>("text")
    }
}

impl Drop for Slate {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
