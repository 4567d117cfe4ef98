//! Cameras and microphones, from GStreamer's device monitor (V4L2 and libcamera
//! cameras, USB webcams, ALSA / PulseAudio / PipeWire microphones).

use gstreamer as gst;
use gstreamer::prelude::*;

/// A device as the set-up page offers it: its name, and the source element that opens
/// it, as pipeline text (`v4l2src device=/dev/video0`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Device {
    pub name: String,
    pub source: String,
}

/// Properties that say which device a source element opens.
const SELECTORS: &[&str] = &["device", "path", "target-object", "camera-name"];

fn list(class: &str) -> Vec<Device> {
    let monitor = gst::DeviceMonitor::new();
    monitor.add_filter(Some(class), None);
    if monitor.start().is_err() {
        return Vec::new();
    }
    let devices = monitor
        .devices()
        .iter()
        .filter_map(|d| {
            let element = d.create_element(None).ok()?;
            let factory = element.factory()?.name().to_string();
            let mut source = factory;
            for prop in SELECTORS {
                if element.find_property(prop).is_some()
                    && let Ok(value) = element.property_value(prop).get::<Option<String>>()
                    && let Some(value) = value.filter(|v| !v.is_empty())
                {
                    source.push_str(&format!(" {prop}=\"{value}\""));
                }
            }
            Some(Device {
                name: d.display_name().to_string(),
                source,
            })
        })
        .collect();
    monitor.stop();
    devices
}

/// Cameras plugged in now.
pub fn cameras() -> Vec<Device> {
    list("Video/Source")
}

/// Microphones (and other audio inputs) now.
pub fn microphones() -> Vec<Device> {
    list("Audio/Source")
}

/// Is `text` a single source element with settings (what a chosen device is), and
/// nothing that could add elements to a pipeline?
pub fn is_source_text(text: &str) -> bool {
    let mut words = text.split_whitespace();
    let Some(factory) = words.next() else {
        return false;
    };
    !text.contains('!')
        && !text.contains('\\')
        && factory
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && gst::ElementFactory::find(factory)
            .is_some_and(|f| f.has_type(gst::ElementFactoryType::SRC))
}
