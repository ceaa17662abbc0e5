//! The Redis server these measurements run against: started here on a free loopback port,
//! without persistence, optionally pinned to one CPU with `taskset`, and stopped (by its own
//! PID only) when dropped. Plus a blocking control connection for set-up commands.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::encode::encode_borrowed;
use redis_protocol::resp2::types::{BorrowedFrame, OwnedFrame};

/// A redis-server process started by this program.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// Starts `binary` on a free 127.0.0.1 port (on CPU `core` when given, at nice value
    /// `nice`) and waits until it answers PING.
    pub fn start(binary: &str, core: Option<usize>, nice: i32) -> io::Result<Self> {
        let port = free_port()?;
        let mut command = launcher(OsStr::new(binary), core, nice);
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--loglevel", "warning", "--logfile", ""])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        // nice and taskset replace themselves with redis-server: the child's PID is the server's.
        let child = command.spawn()?;
        let server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut control) = Control::connect(server.addr())
                && let Ok(OwnedFrame::SimpleString(pong)) = control.call(&[b"PING"])
                && pong == b"PONG"
            {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "redis-server did not start",
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGTERM to the one PID we started, then SIGKILL if it lingers.
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill only sends a signal; `pid` is our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `nice -n ADJUSTMENT taskset -c CORE PROGRAM`, so that PROGRAM runs on CPU `core` at nice
/// value `nice` (the adjustment is relative to the calling thread's own value, which the child
/// inherits), leaving out what is not needed. Both tools exec the next program, so the child's
/// PID is PROGRAM's.
pub fn launcher(program: &OsStr, core: Option<usize>, nice: i32) -> Command {
    let mut argv: Vec<OsString> = Vec::new();
    let adjustment = nice - crate::cpu::current_thread_nice();
    if adjustment != 0 {
        argv.extend(["nice".into(), "-n".into(), adjustment.to_string().into()]);
    }
    if let Some(core) = core {
        argv.extend(["taskset".into(), "-c".into(), core.to_string().into()]);
    }
    argv.push(program.to_owned());
    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]);
    command
}

fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// A blocking connection for set-up commands (SCRIPT LOAD, INFO), outside measured windows.
#[derive(Debug)]
pub struct Control {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Control {
    pub fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends one command and reads its reply.
    pub fn call(&mut self, args: &[&[u8]]) -> io::Result<OwnedFrame> {
        let parts: Vec<BorrowedFrame> = args.iter().map(|a| BorrowedFrame::BulkString(a)).collect();
        let frame = BorrowedFrame::Array(&parts);
        let mut out = vec![0; frame.encode_len(false)];
        encode_borrowed(&mut out, &frame, false).map_err(invalid)?;
        self.stream.write_all(&out)?;
        loop {
            if let Some((reply, used)) = decode(&self.buf).map_err(invalid)? {
                self.buf.drain(..used);
                return Ok(reply);
            }
            let mut chunk = [0; 4096];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends a command whose reply is a bulk or simple string, and returns it as text.
    pub fn call_text(&mut self, args: &[&[u8]]) -> io::Result<String> {
        match self.call(args)? {
            OwnedFrame::BulkString(b) | OwnedFrame::SimpleString(b) => {
                String::from_utf8(b).map_err(invalid)
            }
            other => Err(invalid(format!("unexpected reply {other:?}"))),
        }
    }
}

fn invalid(e: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}
