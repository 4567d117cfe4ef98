//! An implementation of the IETF MoQ specification.
//!
//! Not all features are supported; just to provide compatibility with the crate API.
//!
//! You should not use this module directly; see [crate] for the high-level API.

#[macro_use]
mod parameters;
mod adapter;
pub mod cluster;
mod control;
mod datagram;
pub(crate) mod error;
mod fetch;
mod filter;
mod goaway;
mod group;
pub mod hidden;
mod location;
pub mod message;
mod namespace;
pub mod peer;
mod priority;
mod properties;
mod publish;
mod publish_namespace;
mod publisher;
mod request;
mod request_stream;
mod session;
pub mod solicit;
mod subscribe;
mod subscribe_namespace;
mod subscriber;
pub(crate) mod token;
mod track;
mod version;

use control::Control;
pub use datagram::*;
pub use fetch::*;
pub use filter::*;
pub use goaway::*;
pub use group::*;
pub use location::*;
pub use message::Message;
pub use parameters::*;
pub use properties::Properties;
pub use publish::*;
pub use publish_namespace::*;
use publisher::*;
pub use request::*;
pub use session::*;
pub use subscribe::*;
pub use subscribe_namespace::*; // includes PublishBlocked
use subscriber::*;
pub use track::*;
pub use version::Version;
