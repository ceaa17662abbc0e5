//! A `redis-server` of the test's own on a free loopback port, stopped by PID when dropped,
//! and `redis-cli` against it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::PATIENCE;

/// A running `redis-server`.
pub struct Redis {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Redis {
    /// Starts one on a free port; `None` (with a line on stderr) where `redis-server` is not
    /// installed, unless `CI` is set: there its absence fails the test.
    pub fn start() -> Option<Self> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            let how = "bash benches/peers/install.sh redis";
            assert!(
                std::env::var_os("CI").is_none(),
                "redis-server is not installed ({how})"
            );
            eprintln!("redis-server is not installed ({how}): skipped");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut redis = Self { child: None, port };
        redis.run();
        Some(redis)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn run(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(["--enable-debug-command", "local"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            assert!(Instant::now() < deadline, "redis-server never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it (-9), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (after [`Redis::kill`]).
    pub fn restart(&mut self) {
        self.kill();
        self.run();
    }

    /// `redis-cli -p PORT args...`, its output trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Waits until `PUBSUB NUMSUB channel` is `count` (the nodes subscribed to it).
    pub fn wait_for_subscribers(&self, channel: &str, count: usize) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let answer = self.cli(&["PUBSUB", "NUMSUB", channel]);
            let now = answer
                .lines()
                .nth(1)
                .and_then(|n| n.trim().parse::<usize>().ok());
            if now == Some(count) {
                return;
            }
            assert!(Instant::now() < deadline, "{channel}: {answer}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
