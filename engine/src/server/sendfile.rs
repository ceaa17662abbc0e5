//! `sendfile(2)` from a file to a connection's socket, on the worker or on the runtime's
//! blocking pool.
//!
//! `sendfile` needs a non-blocking socket (a blocking one would hold the calling thread while
//! the client reads nothing). The poll driver keeps every socket non-blocking; io_uring's
//! accepted sockets are blocking, and the first piece makes its socket non-blocking for the
//! rest of the connection: io_uring's receives and sends do not read the socket's mode (they
//! wait for readiness through the ring either way), so switching back after every piece would
//! cost two system calls a piece for nothing.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use compio::BufResult;
use compio::driver::ToSharedFd;
use compio::driver::op::{AsyncifyFd2, Interest, PollOnce};
use compio::net::TcpStream;

use crate::server::file_io::FileSource;

/// Sends `len` bytes of `file` from `offset` on the worker thread: the whole piece unless the
/// file ends first; waits for room through the driver. A page not in the page cache is read
/// from disk inside the call, on the worker.
pub async fn send_on_worker(
    stream: &TcpStream,
    file: &FileSource,
    offset: u64,
    len: usize,
    after_pause: bool,
) -> io::Result<usize> {
    ensure_nonblocking(stream.as_raw_fd())?;
    // A piece starts with a wait for room through the driver, even when there is room: a
    // client that keeps up never fills the socket, and without it a download would send
    // piece after piece while the worker's other connections wait for their turn. A piece
    // that comes after a pause on its cap's timer has given them their turn already.
    if !after_pause {
        wait_for_room(stream).await?;
    }
    let mut done = 0;
    while done < len {
        match send_until_full(
            stream.as_raw_fd(),
            file.raw_fd(),
            offset + done as u64,
            len - done,
        ) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_for_room(stream).await?,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// [`send_on_worker`] with every `sendfile` call made on a thread of the runtime's blocking
/// pool, for pieces whose pages are not all in the page cache: the thread waits for the disk,
/// the worker waits for its answer (as nginx's `aio threads` sends). Each call sends until
/// the socket is full; the worker then waits for room and hands the rest to the pool again.
/// The pool holds the file and the socket open until its call ends, even when the download
/// was dropped meanwhile.
pub async fn send_in_pool(
    stream: &TcpStream,
    file: &FileSource,
    offset: u64,
    len: usize,
) -> io::Result<usize> {
    ensure_nonblocking(stream.as_raw_fd())?;
    let mut done = 0;
    while done < len {
        let (at, count) = (offset + done as u64, len - done);
        let op = AsyncifyFd2::new(
            file.shared_fd(),
            stream.to_shared_fd(),
            move |file: &std::fs::File, socket: &_| {
                let sent = send_until_full(AsRawFd::as_raw_fd(socket), file.as_raw_fd(), at, count);
                BufResult(sent, ())
            },
        );
        match compio::runtime::submit(op).await.0 {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_for_room(stream).await?,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Waits until the socket has room, through the driver.
async fn wait_for_room(stream: &TcpStream) -> io::Result<()> {
    let poll = PollOnce::new(stream.to_shared_fd(), Interest::Writable);
    compio::runtime::submit(poll).await.0.map(drop)
}

/// `sendfile` calls on the non-blocking `socket` until `count` bytes of `file` from `offset`
/// are sent, the file ends or the socket is full: the bytes sent (0 only at the end of the
/// file), or `WouldBlock` when the socket was full before any byte went.
fn send_until_full(socket: RawFd, file: RawFd, offset: u64, count: usize) -> io::Result<usize> {
    let mut position = i64::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
    let mut done = 0;
    while done < count {
        // SAFETY: both descriptors are open for the call (their owners are borrowed, or held
        // by the pool's operation); `position` is a valid `off_t` the kernel updates.
        let sent = unsafe { libc::sendfile(socket, file, &raw mut position, count - done) };
        match sent {
            0 => break,
            n if n > 0 => done += n.unsigned_abs(),
            _ => {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::WouldBlock && done > 0 {
                    break;
                }
                return Err(error);
            }
        }
    }
    Ok(done)
}

/// Makes `fd` non-blocking unless it already is (one `fcntl` when it is); the caller keeps
/// `fd` open for the call.
fn ensure_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFL reads the descriptor's status flags and touches no memory; `fd` is
    // open (the caller borrows its owner).
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::O_NONBLOCK != 0 {
        return Ok(());
    }
    set_nonblocking(fd)
}

/// Switches `O_NONBLOCK` on for `fd`.
fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    let mut value: libc::c_int = 1;
    // SAFETY: FIONBIO reads one `int` from the pointer, which is valid for the call; `fd` is
    // open (the caller borrows its owner).
    let rc = unsafe { libc::ioctl(fd, libc::FIONBIO, &raw mut value) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
