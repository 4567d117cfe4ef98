//! Cameras and microphones, from GStreamer's device monitor (V4L2 and libcamera
//! cameras, USB webcams, ALSA / PulseAudio / PipeWire microphones).

use gstreamer as gst;
use gstreamer::prelude::*;

fn list(class: &str) -> Vec<String> {
    let monitor = gst::DeviceMonitor::new();
    monitor.add_filter(Some(class), None);
    if monitor.start().is_err() {
        return Vec::new();
    }
    let names = monitor
        .devices()
        .iter()
        .map(|d| d.display_name().to_string())
        .collect();
    monitor.stop();
    names
}

/// Cameras plugged in now.
pub fn cameras() -> Vec<String> {
    list("Video/Source")
}

/// Microphones (and other audio inputs) now.
pub fn microphones() -> Vec<String> {
    list("Audio/Source")
}
