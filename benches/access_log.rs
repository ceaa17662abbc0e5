//! What the access log adds to a request on the worker: formatting one line (nginx's
//! `combined`, or JSON) into the worker's batch, and handing full batches to the writer
//! thread (`record`, with a real log file; the thread's own `write(2)` runs on another core
//! and is in the load benchmark's figure, not here).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ringstream_engine::config::{AccessLogConfig, AccessLogFormat, AccessLogTarget};
use ringstream_engine::server::access_log::{AccessLog, RequestLine, WorkerAccessLog};

fn line() -> RequestLine<'static> {
    RequestLine {
        client: std::net::IpAddr::from([203, 0, 113, 9]),
        unix_ms: 1_796_156_102_045,
        method: "GET",
        target: b"/api/items?page=2&sort=price",
        version: "HTTP/1.1",
        status: 200,
        bytes: 1234,
        duration: Duration::from_micros(612),
        referer: b"https://app.example/items",
        user_agent: b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0",
        request_id: b"3f0c9a1b2c3d4e5f60718293a4b5c6d7",
        route: "/api/",
        session: None,
    }
}

fn formatting(c: &mut Criterion) {
    let line = line();
    let mut out = Vec::with_capacity(64 * 1024);
    c.bench_function("access_log/format_combined", |b| {
        b.iter(|| {
            if out.len() > 60 * 1024 {
                out.clear();
            }
            black_box(&line).write_combined(&mut out);
        });
    });
    c.bench_function("access_log/format_json", |b| {
        b.iter(|| {
            if out.len() > 60 * 1024 {
                out.clear();
            }
            black_box(&line).write_json(&mut out);
        });
    });
}

fn recording(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("ringstream-bench-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    for (name, format) in [
        ("access_log/record_combined", AccessLogFormat::Combined),
        ("access_log/record_json", AccessLogFormat::Json),
    ] {
        let config = AccessLogConfig {
            target: AccessLogTarget::File(dir.join(format!("{name}.log").replace('/', "-"))),
            format,
        };
        let log = Arc::new(AccessLog::open(&config).expect("the log opens"));
        let worker = WorkerAccessLog::new(Arc::clone(&log));
        let line = line();
        c.bench_function(name, |b| b.iter(|| worker.record(black_box(&line))));
        worker.flush();
        log.shutdown();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, formatting, recording);
criterion_main!(benches);
