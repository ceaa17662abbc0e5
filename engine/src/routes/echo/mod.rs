//! The echo route: every message back to its sender. The frame loop answers it; this folder
//! holds the turbo path, echoes rewritten in place in the read buffer and sent from there.

pub mod in_place;
