//! A socket's receives and sends (an accepted TCP connection's, an upstream's over TCP or a
//! Unix socket) as futures that hold one operation submitted straight to compio's driver
//! (io_uring or poll), without compio-io's extension traits.
//!
//! Each layer of those traits is an `async fn` that keeps its arguments beside the future it
//! awaits, so a send through `write_all` took 488 bytes of the connection's future, and every
//! open connection's task holds room for the largest of its waits (BENCHMARKS.md, idle
//! memory). A future here holds the submitted operation, its socket and a count. The
//! operations are compio's own (`Recv`, `Send`, `SendVectored`, with `MSG_NOSIGNAL` as
//! compio-net sends), and a receive asks the kernel to poll first when the last one left the
//! socket empty, as compio-net does.

use std::cell::Cell;
use std::io;
use std::ops::RangeBounds;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use compio::BufResult;
use compio::buf::{IntoInner, IoBuf, IoBufMut, IoVectoredBuf, Slice, Uninit, VectoredSlice};
use compio::driver::op::{BufResultExt, Recv, RecvFlags, Send, SendFlags, SendVectored};
use compio::driver::{Extra, OpCode, PollFirst, SharedFd};
use compio::runtime::Submit;
use futures_util::FutureExt;

/// The socket type compio's streams share with their operations (`ToSharedFd`).
pub type Socket = socket2::Socket;

/// Whether the last receive left the socket empty, as the kernel reported it (io_uring only):
/// the next receive then skips its first, futile attempt and waits for data at once.
#[derive(Debug, Default)]
pub struct ReceiveHint(Cell<Option<bool>>);

/// A receive into a vector's spare capacity; the bytes read are appended to it.
pub struct ReceiveAppend<'a> {
    submit: Submit<Recv<Uninit<Vec<u8>>, SharedFd<Socket>>, Extra>,
    hint: &'a ReceiveHint,
}

impl<'a> ReceiveAppend<'a> {
    pub fn new(fd: SharedFd<Socket>, hint: &'a ReceiveHint, buf: Vec<u8>) -> Self {
        let mut op = Recv::new(fd, buf.uninit(), RecvFlags::empty());
        if hint.0.get() == Some(false) {
            op.poll_first();
        }
        Self {
            submit: compio::runtime::submit(op).with_extra(),
            hint,
        }
    }
}

impl Future for ReceiveAppend<'_> {
    type Output = (io::Result<usize>, Vec<u8>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (BufResult(result, op), extra) = ready!(Pin::new(&mut self.submit).poll(cx));
        if let Ok(nonempty) = extra.sock_nonempty() {
            self.hint.0.set(Some(nonempty));
        }
        let received = BufResult(result, op.into_inner());
        // SAFETY: on success the kernel wrote `n` bytes at the start of the spare capacity
        // that `Uninit` lent it; `map_advanced` marks exactly those as initialised.
        let BufResult(result, buf) = unsafe { received.map_advanced() };
        Poll::Ready((result, buf.into_inner()))
    }
}

/// What a send loop sends: a buffer, or a vectored one, and how to send the part not yet sent.
pub trait Outgoing: Sized + 'static {
    type Op: OpCode + IntoInner + 'static;
    fn total(&self) -> usize;
    fn rest(self, fd: SharedFd<Socket>, sent: usize) -> Self::Op;
    fn back(op: Self::Op) -> Self;
}

/// A buffer sent by plain sends.
pub struct Whole<B>(pub B);

impl<B: IoBuf> Outgoing for Whole<B> {
    type Op = Send<Slice<B>, SharedFd<Socket>>;

    fn total(&self) -> usize {
        self.0.buf_len()
    }

    fn rest(self, fd: SharedFd<Socket>, sent: usize) -> Self::Op {
        Send::new(fd, self.0.slice(sent..), no_signal())
    }

    fn back(op: Self::Op) -> Self {
        Self(op.into_inner().into_inner())
    }
}

/// Buffers sent together by vectored sends.
pub struct Gathered<V>(pub V);

impl<V: IoVectoredBuf + 'static> Outgoing for Gathered<V> {
    type Op = SendVectored<VectoredSlice<V>, SharedFd<Socket>>;

    fn total(&self) -> usize {
        self.0.total_len()
    }

    fn rest(self, fd: SharedFd<Socket>, sent: usize) -> Self::Op {
        SendVectored::new(fd, self.0.slice(sent), no_signal())
    }

    fn back(op: Self::Op) -> Self {
        Self(op.into_inner().into_inner())
    }
}

/// Sends all of a buffer, in as many sends as the socket takes.
pub struct SendAll<O: Outgoing> {
    fd: SharedFd<Socket>,
    state: SendState<O>,
    sent: usize,
}

enum SendState<O: Outgoing> {
    Sending(Submit<O::Op>),
    /// Nothing to send (or already answered).
    Done(Option<O>),
}

impl<O: Outgoing> SendAll<O> {
    pub fn new(fd: SharedFd<Socket>, outgoing: O) -> Self {
        let state = if outgoing.total() == 0 {
            SendState::Done(Some(outgoing))
        } else {
            SendState::Sending(compio::runtime::submit(outgoing.rest(fd.clone(), 0)))
        };
        Self { fd, state, sent: 0 }
    }
}

impl<O: Outgoing + Unpin> Future for SendAll<O>
where
    Submit<O::Op>: Unpin,
{
    type Output = (io::Result<()>, O);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            let submit = match &mut this.state {
                SendState::Sending(submit) => submit,
                SendState::Done(outgoing) => {
                    let outgoing = outgoing.take().expect("polled after completion");
                    return Poll::Ready((Ok(()), outgoing));
                }
            };
            let BufResult(result, op) = ready!(Pin::new(submit).poll(cx));
            let outgoing = O::back(op);
            match progress(result) {
                Ok(n) => this.sent += n,
                Err(e) => {
                    this.state = SendState::Done(None);
                    return Poll::Ready((Err(e), outgoing));
                }
            }
            this.state = if this.sent >= outgoing.total() {
                SendState::Done(Some(outgoing))
            } else {
                let rest = outgoing.rest(this.fd.clone(), this.sent);
                SendState::Sending(compio::runtime::submit(rest))
            };
        }
    }
}

/// Sends `buf[range]` straight from `buf` and gives `buf` back.
pub fn send_range(
    fd: SharedFd<Socket>,
    buf: Vec<u8>,
    range: impl RangeBounds<usize>,
) -> impl Future<Output = (io::Result<()>, Vec<u8>)> {
    SendAll::new(fd, Whole(buf.slice(range)))
        .map(|(result, Whole(slice))| (result, slice.into_inner()))
}

/// `MSG_NOSIGNAL`: a peer that closed its end gives `EPIPE`, never a signal.
fn no_signal() -> SendFlags {
    SendFlags::NOSIGNAL
}

/// The bytes one send moved: an interrupted send moved none and is tried again; a send that
/// took nothing is an error (the loop would never end).
fn progress(result: io::Result<usize>) -> io::Result<usize> {
    match result {
        Ok(0) => Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "failed to write whole buffer",
        )),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::config::{IoDriver, RingSetup};
    use crate::server::driver::{ChosenDriver, build_runtime, choose};
    use bytes::Bytes;
    use compio::driver::ToSharedFd;
    use compio::net::{TcpListener, TcpStream};

    /// Both drivers where io_uring can be set up, poll alone where it cannot.
    fn drivers() -> Vec<ChosenDriver> {
        let mut found = vec![ChosenDriver::Poll];
        if let Ok(uring) = choose(IoDriver::Uring, RingSetup::default()) {
            found.push(uring);
        }
        found
    }

    /// Runs `test` on a runtime of each driver of [`drivers`], with a connected pair:
    /// (the accepted side, the connecting side).
    fn on_each_driver<F, Fut>(test: F)
    where
        F: Fn(ChosenDriver, TcpStream, TcpStream) -> Fut,
        Fut: Future<Output = ()>,
    {
        for driver in drivers() {
            let runtime = build_runtime(driver, None, false).unwrap();
            runtime.block_on(async {
                let (server, client) = pair().await;
                test(driver, server, client).await;
            });
        }
    }

    /// A connected pair on loopback: (the accepted side, the connecting side).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (connected, accepted) =
            futures_util::join!(TcpStream::connect(addr), listener.accept());
        (accepted.unwrap().0, connected.unwrap())
    }

    /// Receives until `len` bytes came or the peer closed.
    async fn receive_all(stream: &TcpStream, len: usize) -> Vec<u8> {
        let hint = ReceiveHint::default();
        let mut got = Vec::with_capacity(len);
        while got.len() < len {
            got.reserve(64 * 1024);
            let (result, buf) = ReceiveAppend::new(stream.to_shared_fd(), &hint, got).await;
            got = buf;
            if result.unwrap() == 0 {
                break;
            }
        }
        got
    }

    #[test]
    fn a_large_buffer_and_a_gathered_one_arrive_whole_and_in_order() {
        let whole: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let parts: Vec<Bytes> = (0..64u8)
            .map(|i| Bytes::from(vec![i; 1000 + i as usize]))
            .collect();
        let mut expected = whole.clone();
        parts
            .iter()
            .for_each(|part| expected.extend_from_slice(part));
        on_each_driver(|driver, server, client| {
            let (whole, parts, expected) = (whole.clone(), parts.clone(), expected.clone());
            async move {
                let send = async {
                    let fd = server.to_shared_fd();
                    let (sent, Whole(back)) = SendAll::new(fd.clone(), Whole(whole)).await;
                    sent.unwrap();
                    assert_eq!(back.len(), 4 * 1024 * 1024, "the buffer comes back");
                    let (sent, Gathered(back)) = SendAll::new(fd, Gathered(parts)).await;
                    sent.unwrap();
                    assert_eq!(back.len(), 64);
                };
                let (_, got) = futures_util::join!(send, receive_all(&client, expected.len()));
                assert!(
                    got == expected,
                    "{driver}: the bytes arrive whole and in order"
                );
            }
        });
    }

    #[test]
    fn an_empty_buffer_is_sent_at_once_and_a_closed_peer_reads_as_zero() {
        on_each_driver(|driver, server, client| async move {
            let (sent, Whole(back)) = SendAll::new(server.to_shared_fd(), Whole(Vec::new())).await;
            assert!(sent.is_ok() && back.is_empty());
            drop(server);
            let hint = ReceiveHint::default();
            let (read, buf) =
                ReceiveAppend::new(client.to_shared_fd(), &hint, Vec::with_capacity(16)).await;
            assert_eq!(read.unwrap(), 0, "{driver}: end of stream");
            assert!(buf.is_empty());
        });
    }

    #[test]
    fn a_send_to_a_reset_peer_fails_without_a_signal() {
        on_each_driver(|driver, server, client| async move {
            // SO_LINGER 0: the close resets the connection.
            socket2::SockRef::from(&client)
                .set_linger(Some(std::time::Duration::ZERO))
                .unwrap();
            drop(client);
            let mut failed = false;
            for _ in 0..100 {
                let (sent, _) = SendAll::new(server.to_shared_fd(), Whole(vec![1u8; 65536])).await;
                if sent.is_err() {
                    failed = true;
                    break;
                }
            }
            assert!(
                failed,
                "{driver}: a send to a reset peer fails (EPIPE/ECONNRESET)"
            );
        });
    }
}
