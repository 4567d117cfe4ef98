//! The low-level encoding for the moq-lite specification.
//!
//! You should not use this module directly; see [crate] for the high-level API.
//!
//! Specification: [<https://github.com/moq-dev/drafts>]

mod announce;
mod compress;
mod datagram;
mod fetch;
mod goaway;
mod group;
mod info;
pub mod message;
mod parameters;
mod priority;
mod probe;
mod publisher;
mod session;
mod setup;
mod stream;
mod subscribe;
mod subscriber;
#[cfg(test)]
pub(crate) mod test_transport;
mod track;
mod version;

pub use announce::*;
pub(crate) use compress::*;
#[allow(unused_imports)]
pub use datagram::*;
#[allow(unused_imports)]
pub use fetch::*;
#[allow(unused_imports)]
pub use goaway::*;
pub use group::*;
pub use info::*;
pub use message::Message;
pub use parameters::*;
pub use probe::*;
use publisher::*;
pub(super) use session::*;
#[allow(unused_imports)]
pub use setup::*;
pub use stream::*;
pub use subscribe::*;
use subscriber::*;
#[allow(unused_imports)]
pub use track::*;
pub use version::Version;
