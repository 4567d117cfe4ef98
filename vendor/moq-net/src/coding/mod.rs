//! Contains encoding and decoding helpers.

mod codes;
mod decode;
mod encode;
mod reader;
mod size;
mod stream;
mod varint;
mod version;
mod writer;

pub use codes::*;
pub use decode::*;
pub use encode::*;
pub use reader::*;
pub use size::*;
pub use stream::*;
pub use varint::*;
pub use version::*;
pub use writer::*;
