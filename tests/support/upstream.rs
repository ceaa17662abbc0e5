//! The upstreams of the proxy route's tests, as child processes on loopback: the Starlette app
//! of `tests/upstreams/app.py` on uvicorn, and the raw asyncio upstream of
//! `tests/upstreams/raw_upstream.py` that records every request (or misbehaves on purpose).
//! Both run on the Python of `benches/peers/.env`; without it they panic, never skip.
//! And an HTTP/1.1 response reader that understands chunked and close-delimited bodies.
#![allow(
    dead_code,
    reason = "each test file uses a different part of the helpers"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail the test loudly"
)]

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{PATIENCE, Response, TempFile};

use super::http_framing::read_any_response;

/// How long an upstream may take to start accepting.
const START_PATIENCE: Duration = Duration::from_secs(20);

/// The repository root (the tests belong to the root package).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/upstreams`, where the Python upstreams live.
pub fn upstreams_dir() -> PathBuf {
    repo_root().join("tests/upstreams")
}

/// The Python of the peers' virtualenv.
pub fn python() -> PathBuf {
    peer_tool("python")
}

/// The uvicorn of the peers' virtualenv.
pub fn uvicorn() -> PathBuf {
    peer_tool("uvicorn")
}

fn peer_tool(name: &str) -> PathBuf {
    let path = repo_root().join("benches/peers/.env/bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: the proxy tests run their upstreams on the peers' Python; \
         run `bash benches/peers/install.sh python` first",
        path.display()
    );
    path
}

/// A loopback port free at the time of the call (bound to port 0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A command on the peers' Python tools: no bytecode written into the tree, unbuffered output.
fn python_command(program: PathBuf) -> Command {
    let mut command = Command::new(program);
    command
        .current_dir(repo_root())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null());
    command
}

/// `tests/upstreams/app.py` on uvicorn, killed by PID when dropped.
pub struct Uvicorn {
    /// The loopback port; 0 when it listens on a Unix socket.
    pub port: u16,
    /// The Unix socket, for [`Uvicorn::start_on_unix`].
    pub uds: Option<PathBuf>,
    child: Child,
    log: TempFile,
}

impl Uvicorn {
    /// On a free loopback port.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// On a free loopback port, with more uvicorn options (`--timeout-keep-alive 1`, ...).
    pub fn start_with(args: &[&str]) -> Self {
        // The port is free when picked but may be taken before uvicorn binds it: try again.
        let mut failures = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let port_arg = port.to_string();
            let mut all = vec!["--host", "127.0.0.1", "--port", port_arg.as_str()];
            all.extend_from_slice(args);
            let mut uvicorn = Self::spawn(&all, port, None);
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            match uvicorn.wait_until_ready(|| TcpStream::connect(addr).is_ok()) {
                Ok(()) => return uvicorn,
                Err(why) => failures.push(why),
            }
        }
        panic!("uvicorn did not start:\n{}", failures.join("\n"));
    }

    /// On the Unix socket `path` (`--uds`); the socket file is removed when dropped.
    pub fn start_on_unix(path: &Path) -> Self {
        let _ = std::fs::remove_file(path);
        let path_arg = path.to_str().expect("a UTF-8 socket path");
        let mut uvicorn = Self::spawn(&["--uds", path_arg], 0, Some(path.to_owned()));
        if let Err(why) = uvicorn.wait_until_ready(|| UnixStream::connect(path).is_ok()) {
            panic!("uvicorn did not start on {}:\n{why}", path.display());
        }
        uvicorn
    }

    fn spawn(args: &[&str], port: u16, uds: Option<PathBuf>) -> Self {
        let log = TempFile::new("uvicorn.log", b"");
        let stderr = std::fs::File::create(&log.path).unwrap();
        let stdout = stderr.try_clone().unwrap();
        let child = python_command(uvicorn())
            .args(["app:app", "--app-dir"])
            .arg(upstreams_dir())
            .args(["--log-level", "warning"])
            .args(args)
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start uvicorn");
        Self {
            port,
            uds,
            child,
            log,
        }
    }

    /// Polls `accepts` until it holds; the reason when the child exits or time runs out.
    fn wait_until_ready(&mut self, accepts: impl Fn() -> bool) -> Result<(), String> {
        let deadline = Instant::now() + START_PATIENCE;
        loop {
            if accepts() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("uvicorn exited ({status}):\n{}", self.log()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "uvicorn not accepting after {START_PATIENCE:?}:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// 127.0.0.1 and the port.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What uvicorn wrote so far (stdout and stderr; warnings and errors only).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log.path).unwrap()
    }

    /// A connection to uvicorn's TCP port, with [`PATIENCE`] as read timeout.
    pub fn connect(&self) -> TcpStream {
        connect(self.addr())
    }

    /// One request on a fresh connection; the whole response (any framing).
    pub fn request(&self, raw: &[u8]) -> Response {
        let mut stream = self.connect();
        stream.write_all(raw).unwrap();
        read_any_response(&mut stream).expect("a response")
    }
}

impl Drop for Uvicorn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(path) = &self.uds {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `tests/upstreams/raw_upstream.py` in one of its modes (`record`, `reset`, `garbage`,
/// `silent`, `truncated`, `close-idle`), killed by PID when dropped.
pub struct RawUpstream {
    pub port: u16,
    log: TempFile,
    child: Child,
}

impl RawUpstream {
    /// On a port the upstream picks (`--port 0`), once it says `listening PORT`.
    pub fn start(mode: &str) -> Self {
        let log = TempFile::new("jsonl", b"");
        let mut child = python_command(python())
            .arg(upstreams_dir().join("raw_upstream.py"))
            .args(["--port", "0", "--mode", mode, "--log"])
            .arg(&log.path)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start raw_upstream.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                let _ = child.wait();
                panic!("raw_upstream.py --mode {mode}: unexpected first line {line:?}")
            });
        Self { port, log, child }
    }

    /// 127.0.0.1 and the port.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A connection to the upstream, with [`PATIENCE`] as read timeout.
    pub fn connect(&self) -> TcpStream {
        connect(self.addr())
    }

    /// Every record so far, in order: `{"connection": k}` at each accept, one object per
    /// request (`method`, `target`, `version`, `headers`, `body_len`, `body_sha256`,
    /// `trailers`) and `{"desync": why}` for each request refused.
    pub fn records(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.log.path).unwrap();
        // Each record is one write of a whole line: a line without its newline is still
        // being written.
        text.split_inclusive('\n')
            .filter(|line| line.ends_with('\n'))
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// The request records so far.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.records()
            .into_iter()
            .filter(|r| r.get("method").is_some())
            .collect()
    }

    /// The reasons of the requests refused so far.
    pub fn desyncs(&self) -> Vec<String> {
        self.records()
            .iter()
            .filter_map(|r| r.get("desync")?.as_str().map(str::to_owned))
            .collect()
    }

    /// How many connections the upstream has accepted so far.
    pub fn connections(&self) -> usize {
        self.records()
            .iter()
            .filter(|r| r.get("connection").is_some())
            .count()
    }

    /// Polls the records until `pick` holds (within [`PATIENCE`]); returns them.
    pub fn wait_for_records(
        &self,
        pick: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let records = self.records();
            if pick(&records) {
                return records;
            }
            assert!(Instant::now() < deadline, "never reached: {records:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The headers of a request record, as (name, value) pairs.
pub fn record_headers(record: &serde_json::Value) -> Vec<(String, String)> {
    record["headers"]
        .as_array()
        .expect("a request record")
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().unwrap().to_owned(),
                pair[1].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A loopback connection with [`PATIENCE`] as read timeout and no Nagle delay.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// The body of `/api/big?bytes=N`: byte i is i % 251.
pub fn big_body(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// The body of `/api/stream?chunks=N&size=S`: S bytes of value i % 256 for each chunk i.
pub fn stream_body(chunks: usize, size: usize) -> Vec<u8> {
    (0..chunks)
        .flat_map(|i| std::iter::repeat_n((i % 256) as u8, size))
        .collect()
}

impl Uvicorn {
    /// `module` (`"app:app"`) of `app_dir` on uvicorn at 127.0.0.1:`port`, with `env` added to
    /// its environment (for an app other than `tests/upstreams/app.py`); the reason when it
    /// does not start accepting (the port taken meanwhile, the app failing to import).
    pub fn start_app(
        app_dir: &Path,
        module: &str,
        port: u16,
        env: &[(&str, &str)],
    ) -> Result<Self, String> {
        let log = TempFile::new("uvicorn.log", b"");
        let stderr = std::fs::File::create(&log.path).unwrap();
        let stdout = stderr.try_clone().unwrap();
        let child = python_command(uvicorn())
            .arg(module)
            .arg("--app-dir")
            .arg(app_dir)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--log-level", "warning"])
            .envs(env.iter().copied())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start uvicorn");
        let mut uvicorn = Self {
            port,
            uds: None,
            child,
            log,
        };
        let addr = uvicorn.addr();
        uvicorn.wait_until_ready(|| TcpStream::connect(addr).is_ok())?;
        Ok(uvicorn)
    }
}
