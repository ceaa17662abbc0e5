//! The `files` route: static files below a root directory, with ranges, conditional
//! requests and bandwidth caps.
//!
//! - [`request`]: what a request asks of a file, captured from its head (the path below the
//!   root, `Range`, the validators, `?download=NAME`).
//! - [`answer`]: deciding the status (200, 206, 304, 416) from the request and the file's
//!   size and modification time, and writing the response head. No I/O.
//! - [`pace`]: the bandwidth caps (per connection, per client on every core, per route)
//!   as byte budgets asked before each piece is sent.
//! - [`send`]: streaming the chosen range: read a piece, send it, repeat, so a download holds
//!   one piece (`chunk_size`) in memory.
//! - [`root`]: the route's root directory, and opening files strictly beneath it.
//! - [`respond`]: answering one request on a connection: open, decide, send the head and body.

pub mod answer;
pub mod pace;
pub mod request;
pub mod respond;
pub mod root;
pub mod send;

pub use request::FileRequest;
