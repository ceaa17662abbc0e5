//! The `upload` route: a request body streamed to a temporary file in the upload directory
//! and renamed to its final name only once it is complete, so no partial file ever carries a
//! final name.
//!
//! - [`name`]: the stored name a request path asks for, sanitized.
//! - [`store`]: the upload directory (temporary files, the rename, the clean-up of what a
//!   killed process left), one upload in progress (deleted on every path that does not
//!   complete it), and the per-client cap on uploads at once.
//! - [`request`]: what an upload request asks for, captured from its head, and its 201.

pub mod name;
pub mod request;
pub mod store;
