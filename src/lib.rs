//! classbox: brings a remote teacher into the classroom live over a poor school link.
//!
//! ```text
//! teacher:   capture (media) -> encode (media) -> Frame -> publish (transport, moq-lite/QUIC)
//!                                                              |
//! relay:                          rooms + tokens (relay) around moq-net's fan-out origin
//!                                                              |
//! classroom: subscribe (transport) -> Frame -> decode (media) -> display + speakers
//!            LessonStats -> web page (web)
//!            page / lesson events -> outbox (lms, SQLite) -> sync worker -> xAPI / Canvas / Moodle
//! ```
//!
//! `media` (GStreamer) and `transport` (quinn) never import each other: they meet
//! through [`frame::Frame`] and [`stats::LessonStats`], wired together in [`roles`].

pub mod abr;
pub mod auth;
pub mod backoff;
pub mod bench;
pub mod cli;
pub mod config;
pub mod emulator;
pub mod frame;
pub mod lms;
pub mod media;
pub mod relay;
pub mod roles;
pub mod shutdown;
pub mod state;
pub mod stats;
pub mod systemd;
pub mod telemetry;
pub mod transport;
pub mod web;
