//! HTTP/1.1 connections: the per-connection state machine, the answers of the built-in
//! routes (`publish` among them), and the refusals the protections send.

mod apps;
mod conn;
mod files;
mod observe;
mod publish;
mod refuse;

pub use conn::serve;
pub use refuse::refuse_unread;
