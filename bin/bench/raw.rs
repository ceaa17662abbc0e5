//! The physical ceiling: the same echo traffic without WebSocket, against a trivial TCP echo
//! server on the same kernel.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use compio::BufResult;
use compio::io::{AsyncReadExt, AsyncWriteExt};
use compio::net::{TcpListener, TcpStream};

use super::Phase;
use super::stats::Stats;

/// Echoes every byte back until the peer closes (single-threaded; prints its address).
pub async fn serve(listen: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        compio::runtime::spawn(async move {
            let _ = stream.set_nodelay(true);
            let mut stream = stream;
            let mut buf = Vec::with_capacity(64 * 1024);
            loop {
                buf.clear();
                let BufResult(read, returned) = stream.append(buf).await;
                buf = returned;
                if !matches!(read, Ok(n) if n > 0) {
                    return;
                }
                let BufResult(written, returned) = stream.write_all(buf).await;
                buf = returned;
                if written.is_err() {
                    return;
                }
            }
        })
        .detach();
    }
}

/// One connection of the raw echo load: `size` bytes out, the same `size` bytes back.
pub async fn echo(
    addr: SocketAddr,
    size: usize,
    phase: Rc<Cell<Phase>>,
    stats: Rc<RefCell<Stats>>,
) {
    let stream = match TcpStream::connect(addr).await {
        Ok(stream) => stream,
        Err(e) => return stats.borrow_mut().error(format!("connect: {e}")),
    };
    let _ = stream.set_nodelay(true);
    let mut stream = stream;
    let message: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let mut out = message.clone();
    let mut back = Vec::with_capacity(size.max(1));
    while phase.get() != Phase::Done {
        let sent = Instant::now();
        let BufResult(result, returned) = stream.write_all(out).await;
        out = returned;
        if let Err(e) = result {
            return stats.borrow_mut().error(format!("write: {e}"));
        }
        back.clear();
        while back.len() < size {
            let BufResult(result, returned) = stream.append(back).await;
            back = returned;
            match result {
                Ok(n) if n > 0 => {}
                _ => return stats.borrow_mut().error("read: closed".into()),
            }
        }
        if back != message {
            return stats.borrow_mut().error("wrong echo".into());
        }
        if phase.get() == Phase::Measure {
            stats.borrow_mut().record(sent.elapsed());
        }
    }
}
