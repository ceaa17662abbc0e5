//! Choosing the completion driver (io_uring or poll) and the io_uring set-up flags.

use std::collections::HashSet;
use std::io;

use compio::driver::{DriverType, ProactorBuilder};
use compio::runtime::{Runtime, RuntimeBuilder};

use crate::config::{IoDriver, ReceiveMode, RingSetup};
use crate::error::EngineError;
use crate::server::ring_receive::RingUse;

/// The driver every worker of this process runs on, decided once at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChosenDriver {
    /// io_uring, with the given set-up flags.
    Uring(RingSetup),
    /// The readiness driver (epoll).
    Poll,
}

impl std::fmt::Display for ChosenDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Uring(setup) => write!(f, "io_uring ({setup})"),
            Self::Poll => f.write_str("poll"),
        }
    }
}

/// Decides the driver: `auto` probes io_uring once and falls back to poll with one log line
/// (old kernel, seccomp, `kernel.io_uring_disabled`); `uring` fails if io_uring cannot be set up.
pub fn choose(requested: IoDriver, setup: RingSetup) -> Result<ChosenDriver, EngineError> {
    match requested {
        IoDriver::Poll => Ok(ChosenDriver::Poll),
        IoDriver::Uring => probe_uring(setup)
            .map(|()| ChosenDriver::Uring(setup))
            .map_err(EngineError::UringUnavailable),
        IoDriver::Auto => match probe_uring(setup) {
            Ok(()) => Ok(ChosenDriver::Uring(setup)),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "io_uring cannot be set up here; running on the poll driver instead"
                );
                Ok(ChosenDriver::Poll)
            }
        },
    }
}

fn probe_uring(setup: RingSetup) -> io::Result<()> {
    proactor(ChosenDriver::Uring(setup)).build().map(drop)
}

fn proactor(driver: ChosenDriver) -> ProactorBuilder {
    let mut builder = ProactorBuilder::new();
    // Room for a burst of submissions from many connections before the ring must be entered.
    builder.capacity(4096);
    match driver {
        ChosenDriver::Poll => {
            builder.driver_type(DriverType::Poll);
        }
        ChosenDriver::Uring(setup) => {
            builder.driver_type(DriverType::IoUring);
            match setup {
                RingSetup::Default => {}
                RingSetup::CoopTaskrun => {
                    builder.coop_taskrun(true).taskrun_flag(true);
                }
                RingSetup::DeferTaskrun => {
                    builder.single_issuer(true).defer_taskrun(true);
                }
            }
        }
    }
    builder
}

/// Buffers in a worker's receive ring, and the size of each (`receive = "ring"`): 8 MiB per
/// worker, resident once used. A completion holds its buffer only until the connection copies
/// it out; a ring run dry sends connections to a receive per read for a few reads.
const RING_BUFFERS: u16 = 512;
pub const RING_BUFFER_LEN: usize = 16 * 1024;

/// When the worker's WebSocket sessions arm their multishot receive: `receive` on io_uring
/// (the poll driver has no multishot receive, so it receives per read whatever is asked).
pub fn ring_use(driver: ChosenDriver, mode: ReceiveMode) -> RingUse {
    match (driver, mode) {
        (ChosenDriver::Poll, _) | (_, ReceiveMode::PerRead) => RingUse::Never,
        (ChosenDriver::Uring(_), ReceiveMode::Ring) => RingUse::AtSessionStart,
        (ChosenDriver::Uring(_), ReceiveMode::Auto) => RingUse::AfterSmallBursts,
    }
}

/// Builds a worker's single-threaded runtime on `driver`, pinned to `core` when given, with a
/// receive ring when `ring_receive`.
pub fn build_runtime(
    driver: ChosenDriver,
    core: Option<usize>,
    ring_receive: bool,
) -> io::Result<Runtime> {
    let mut builder = RuntimeBuilder::new();
    let mut proactor = proactor(driver);
    if ring_receive && let Some(buffers) = std::num::NonZero::new(RING_BUFFERS) {
        proactor
            .buffer_pool_size(buffers)
            .buffer_pool_buffer_len(RING_BUFFER_LEN);
    }
    builder.with_proactor(proactor);
    if let Some(core) = core {
        builder.thread_affinity(HashSet::from([core]));
    }
    builder.build()
}
