//! Starting the real `ringstream` binary on an ephemeral loopback port, and speaking raw HTTP to it.
#![allow(
    dead_code,
    reason = "each test file uses a different part of the helpers"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail the test loudly"
)]

pub mod browser;
pub mod clients;
pub mod cluster;
pub mod files;
pub mod http_framing;
pub mod redis;
pub mod seccomp;
pub mod tls;
pub mod upstream;
pub mod ws;

#[cfg(target_arch = "x86_64")]
pub use seccomp::deny_io_uring;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The I/O drivers every behaviour is tested on: `auto` picks poll wherever io_uring is
/// blocked, so poll is a production path.
pub const DRIVERS: [&str; 2] = ["uring", "poll"];

/// Generous bound for anything that should happen "at once" on a loaded 2-core CI machine.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A running `ringstream serve` process, killed by PID when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    _config: Option<TempFile>,
    log: Option<TempFile>,
    /// What the server writes to standard output after its first line (kept open: an access
    /// log on stdout is read from it).
    stdout: BufReader<std::process::ChildStdout>,
}

impl Server {
    /// `ringstream serve --listen 127.0.0.1:0` plus `args`.
    pub fn start(args: &[&str]) -> Self {
        Self::spawn(args, None)
    }

    /// Like [`Server::start`] with a config file holding `toml`.
    pub fn with_config(toml: &str, args: &[&str]) -> Self {
        let file = TempFile::new("toml", toml.as_bytes());
        let path = file.path.to_str().unwrap().to_owned();
        let mut all = vec!["--config", path.as_str()];
        all.extend_from_slice(args);
        Self::spawn(&all, Some(file))
    }

    /// `ringstream serve --config PATH` plus `args`, with its log captured ([`Server::log`]):
    /// the test owns the file and may rewrite it (a reload).
    pub fn with_config_file(path: &std::path::Path, args: &[&str]) -> Self {
        let mut all = vec!["--config", path.to_str().unwrap()];
        all.extend_from_slice(args);
        let mut command = serve_command(&all);
        let log = TempFile::new("log", b"");
        command.stderr(std::fs::File::create(&log.path).unwrap());
        let mut server = Self::spawn_command(command, None);
        server.log = Some(log);
        server
    }

    fn spawn(args: &[&str], config: Option<TempFile>) -> Self {
        Self::spawn_command(serve_command(args), config)
    }

    /// Like [`Server::start`], in a process where `io_uring_setup` fails with `ENOSYS`, as under
    /// a container's seccomp profile.
    #[cfg(target_arch = "x86_64")]
    pub fn start_without_io_uring(args: &[&str]) -> Self {
        let mut command = serve_command(args);
        deny_io_uring(&mut command, libc::ENOSYS);
        let log = TempFile::new("log", b"");
        command.stderr(std::fs::File::create(&log.path).unwrap());
        let mut server = Self::spawn_command(command, None);
        server.log = Some(log);
        server
    }

    /// Like [`Server::with_config`], in a mount namespace of its own where `dir` (which must
    /// exist) is a fresh tmpfs of `size` bytes: a small disk that fills up, seen by the server
    /// only (the test reads it through [`Server::path_as_seen`]). Needs `CAP_SYS_ADMIN` (CI
    /// runs as root); `None` where the namespace cannot be made.
    pub fn with_config_on_small_disk(
        toml: &str,
        args: &[&str],
        dir: &std::path::Path,
        size: usize,
    ) -> Option<Self> {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::process::CommandExt;
        let file = TempFile::new("toml", toml.as_bytes());
        let mut all = vec!["--config", file.path.to_str().unwrap()];
        all.extend_from_slice(args);
        let mut command = serve_command(&all);
        // Made before the fork: the child may only make system calls.
        let target = CString::new(dir.as_os_str().as_bytes()).unwrap();
        let options = CString::new(format!("size={size}")).unwrap();
        let (tmpfs, root) = (c"tmpfs", c"/");
        // SAFETY: the closure runs in the child between fork and exec and only makes system
        // calls on strings allocated before the fork.
        unsafe {
            command.pre_exec(move || {
                let fail = || Err(std::io::Error::last_os_error());
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return fail();
                }
                let private = libc::MS_REC | libc::MS_PRIVATE;
                let null = std::ptr::null();
                if libc::mount(null, root.as_ptr(), null, private, null.cast()) != 0 {
                    return fail();
                }
                let data = options.as_ptr().cast();
                if libc::mount(tmpfs.as_ptr(), target.as_ptr(), tmpfs.as_ptr(), 0, data) != 0 {
                    return fail();
                }
                Ok(())
            });
        }
        match Self::try_spawn_command(command, Some(file)) {
            Ok(server) => Some(server),
            Err(e) => {
                println!("skipped: no mount namespace here ({e})");
                None
            }
        }
    }

    /// `path` as the server's mount namespace shows it.
    pub fn path_as_seen(&self, path: &std::path::Path) -> PathBuf {
        let relative = path.strip_prefix("/").unwrap_or(path);
        PathBuf::from(format!("/proc/{}/root", self.pid())).join(relative)
    }

    /// What the server logged so far, for servers started with a captured log.
    pub fn log(&self) -> String {
        let log = self.log.as_ref().expect("started with a captured log");
        std::fs::read_to_string(&log.path).unwrap()
    }

    fn spawn_command(command: Command, config: Option<TempFile>) -> Self {
        Self::try_spawn_command(command, config).expect("start ringstream")
    }

    fn try_spawn_command(mut command: Command, config: Option<TempFile>) -> std::io::Result<Self> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("unexpected first line {line:?}")
            })
            .parse()
            .unwrap();
        Ok(Self {
            child,
            addr,
            _config: config,
            log: None,
            stdout,
        })
    }

    /// The next line the server writes to standard output (without its `\n`); panics when
    /// none comes within [`PATIENCE`].
    pub fn stdout_line(&mut self) -> String {
        use std::os::fd::AsRawFd;
        if !self.stdout.buffer().contains(&b'\n') {
            let mut pollfd = libc::pollfd {
                fd: self.stdout.get_ref().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let millis = i32::try_from(PATIENCE.as_millis()).unwrap();
            // SAFETY: one valid pollfd for the pipe this helper owns.
            let ready = unsafe { libc::poll(&raw mut pollfd, 1, millis) };
            assert_eq!(
                ready, 1,
                "no line on the server's stdout within {PATIENCE:?}"
            );
        }
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim_end_matches('\n').to_owned()
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    /// The server's resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    pub fn signal(&self, signo: i32) {
        // SAFETY: plain kill(2) on the PID of the child this helper started and still owns.
        let rc = unsafe { libc::kill(self.pid(), signo) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
    }

    /// One request on a fresh connection; returns the response.
    pub fn request(&self, raw: &[u8]) -> Response {
        let mut stream = self.connect();
        stream.write_all(raw).unwrap();
        read_response(&mut stream).expect("a response")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ringstream"));
    command
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "warn");
    command
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response (head and `Content-Length` body). `None` if the connection closed first.
pub fn read_response(stream: &mut impl Read) -> Option<Response> {
    read_response_to(stream, false)
}

/// Reads the response to a `HEAD` request: the head only.
pub fn read_head_response(stream: &mut impl Read) -> Option<Response> {
    read_response_to(stream, true)
}

fn read_response_to(stream: &mut impl Read, head_only: bool) -> Option<Response> {
    let mut buf = Vec::new();
    let head_len = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Ok(0) => return None,
            Ok(_) => buf.push(byte[0]),
            // A socket with a receive timeout reports an interruption as EINTR instead of
            // restarting (sock_intr_errno); an in-process io_uring server's task-work
            // notifications can cause one. Read again.
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return None,
            Err(e) => panic!("reading a response: {e}"),
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut headers);
    parsed.parse(&buf[..head_len]).expect("valid response head");
    let status = parsed.code.unwrap();
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; if head_only || status == 100 { 0 } else { len }];
    stream.read_exact(&mut body).ok()?;
    Some(Response {
        status,
        headers,
        body,
    })
}

/// True when the server has closed the connection: the next read sees EOF (or a reset).
pub fn is_closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => return true,
            Ok(_) => return false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                return matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe);
            }
        }
    }
}

/// Asserts `raw` is answered with `status` and the connection is then closed.
pub fn assert_refused(server: &Server, raw: &[u8], status: u16) -> Response {
    let mut stream = server.connect();
    stream.write_all(raw).unwrap();
    let response = read_response(&mut stream)
        .unwrap_or_else(|| panic!("no response to {:?}", String::from_utf8_lossy(raw)));
    assert_eq!(
        response.status,
        status,
        "for request {:?}",
        String::from_utf8_lossy(raw)
    );
    assert_eq!(response.header("connection"), Some("close"));
    assert!(
        is_closed(&mut stream),
        "connection left open after {status}"
    );
    response
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A file removed when dropped.
pub struct TempFile {
    pub path: PathBuf,
}

impl TempFile {
    pub fn new(ext: &str, contents: &[u8]) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "ringstream-test-{}-{}.{ext}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).unwrap();
        Self { path }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Runs the `ringstream` binary with `args` to completion; returns (exit code, stderr).
pub fn run_binary(args: &[&str]) -> (i32, String) {
    run_command(Command::new(env!("CARGO_BIN_EXE_ringstream")).args(args))
}

/// Runs `command` to completion; returns (exit code, stderr).
pub fn run_command(command: &mut Command) -> (i32, String) {
    let output = command.stdin(Stdio::null()).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

impl Server {
    /// `GET /stats` (the route must exist), parsed.
    pub fn stats(&self) -> serde_json::Value {
        let response = self.request(b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert_eq!(response.status, 200);
        serde_json::from_slice(&response.body).unwrap()
    }

    /// Polls `/stats` until `pick` holds; returns the stats that passed.
    pub fn wait_for_stats(&self, pick: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let stats = self.stats();
            if pick(&stats) {
                return stats;
            }
            assert!(Instant::now() < deadline, "never reached: {stats}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A connection to `server` from the loopback address 127.0.0.`host`.
pub fn connect_from(server: &Server, host: u8) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let local = SocketAddr::from((std::net::Ipv4Addr::new(127, 0, 0, host), 0));
    socket.bind(&local.into()).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Sends `raw` on `stream` and reads the answer.
pub fn ask(stream: &mut (impl Read + Write), raw: impl AsRef<[u8]>) -> Response {
    stream.write_all(raw.as_ref()).unwrap();
    read_response(stream).expect("a response")
}
