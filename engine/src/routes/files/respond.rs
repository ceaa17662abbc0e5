//! Answering a request on a `files` route: method, path and file checks (404 for anything
//! that is not a regular file beneath the root), the decision and head of
//! [`crate::routes::files::answer`], then the body through [`crate::routes::files::send`].

use std::fs::File;
use std::os::unix::fs::MetadataExt as _;
use std::time::Instant;

use crate::config::{FilesConfig, Route, SendPath};
use crate::protections::gate::ClientSlot;
use crate::routes::files::FileRequest;
use crate::routes::files::answer::{self, Decision, FileFacts, HeadParts};
use crate::routes::files::pace::Pacer;
use crate::routes::files::send::{self, Body, Cut, Deadlines};
use crate::routes::plain::{self, MethodClass, Page};
use crate::routes::state::RouteState;
use crate::server::context::WorkerContext;
use crate::server::registry::ConnGuard;
use crate::server::transfers::{Direction, NewTransfer, Progress};
use crate::server::transport::{FileSource, Transport};
use ringstream_limits::gcra::GcraState;

/// The largest piece one `sendfile(2)` is asked for when no cap applies.
const SENDFILE_PIECE: usize = 4 * 1024 * 1024;

/// What answering needs besides the request.
#[derive(Debug)]
pub struct Exchange<'a, T> {
    /// The connection's stream.
    pub io: &'a T,
    /// Its place in the worker's registry (deadlines).
    pub guard: &'a ConnGuard,
    /// The worker.
    pub ctx: &'a WorkerContext,
    /// The matched route's index.
    pub route_index: usize,
    /// The connection's client, for `client_bandwidth`.
    pub client: Option<&'a ClientSlot>,
    /// Whether the response ends the connection.
    pub close: bool,
    /// The connection's `rate_limit_bandwidth` budget, shared by its responses.
    pub bandwidth: &'a mut GcraState,
    /// Bytes written to the client here (what stays queued in the returned buffer is not),
    /// and the status of a head sent with them (0 when none was): for the access log.
    pub written: &'a mut (u64, u16),
}

/// Answers `request`: queues the head (and any short body) in `out`, and for a `GET` that
/// sends the file, writes `out` and streams the body. `Err` when the connection must close
/// because the body could not be sent whole.
pub async fn answer<T: Transport>(
    mut exchange: Exchange<'_, T>,
    request: &FileRequest,
    method: MethodClass,
    out: Vec<u8>,
) -> Result<Vec<u8>, (Cut, Vec<u8>)> {
    let ctx = exchange.ctx;
    let route = &ctx.router.routes()[exchange.route_index];
    let (crate::config::RouteKind::Files(files), Some(state)) =
        (&route.kind, ctx.route_state(exchange.route_index))
    else {
        return Ok(out);
    };
    let mut out = out;
    let date = ctx.date.now();
    if method == MethodClass::Other {
        let page = Page {
            method,
            date: &date,
            close: exchange.close,
            extra: &[],
        };
        page.not_read_only(&mut out);
        return Ok(out);
    }
    let Some((file, facts, name)) = open(state, files, request) else {
        plain::not_found(method, &date, exchange.close, &mut out);
        return Ok(out);
    };
    let decision = answer::decide(request, facts, files.max_ranges);
    let attachment = request
        .download
        .as_deref()
        .or_else(|| files.attachment.then_some(name.as_str()));
    let content_type = mime_guess::from_path(&name)
        .first_raw()
        .unwrap_or("application/octet-stream");
    let parts = HeadParts {
        content_type,
        attachment,
        close: exchange.close,
    };
    let head_start = out.len();
    answer::write_head(&mut out, &decision, facts, &parts, &date);
    let status = crate::server::access_log::status_of(&out[head_start..]);
    let Decision::Send { range, .. } = decision else {
        return Ok(out);
    };
    if method == MethodClass::Head || range.is_empty() {
        return Ok(out);
    }
    exchange.written.1 = status;
    let listed = ctx.metrics.transfers().begin(NewTransfer {
        direction: Direction::Download,
        route: &route.path,
        name: &String::from_utf8_lossy(request.path.as_deref().unwrap_or_default()),
        client: exchange.client.map(ClientSlot::address),
        size: Some(range.end - range.start),
    });
    let progress = Progress::new(out.len() as u64, listed);
    let source = FileSource::new(file);
    let body = Body {
        file: &source,
        range,
    };
    stream(&mut exchange, route, files, state, body, progress, out).await
}

/// Sends `body` after the head in `out`, under the route's caps and timeouts, counting what
/// leaves in `progress`.
async fn stream<T: Transport>(
    exchange: &mut Exchange<'_, T>,
    route: &Route,
    files: &FilesConfig,
    state: &RouteState,
    body: Body<'_>,
    mut progress: Progress,
    out: Vec<u8>,
) -> Result<Vec<u8>, (Cut, Vec<u8>)> {
    let ctx = exchange.ctx;
    let client = exchange
        .client
        .map(|slot| (ctx.gate.as_ref(), slot, exchange.route_index));
    // A body of one chunk or less leaves with its head in one write (one system call where
    // sendfile would take four); sendfile holds no buffer, so its pieces can be larger.
    let path = match files.send {
        SendPath::Sendfile | SendPath::Auto
            if body.range.end - body.range.start <= files.chunk_size as u64 =>
        {
            SendPath::Copy
        }
        path => path,
    };
    let piece = match path {
        SendPath::Sendfile | SendPath::Auto => files.chunk_size.max(SENDFILE_PIECE),
        SendPath::Copy | SendPath::Zerocopy => files.chunk_size,
    };
    let mut pacer = Pacer::new(
        &route.limits.bandwidth,
        piece,
        exchange.bandwidth,
        client,
        state.global_bandwidth.as_ref(),
    );
    let deadlines = Deadlines {
        path,
        send_timeout: route.limits.send_timeout,
        download: Instant::now() + route.limits.download_timeout,
    };
    // Corked like nginx's tcp_nopush: the head rides with the file's first bytes, and only
    // full segments leave until the body is done.
    let cork = matches!(path, SendPath::Sendfile | SendPath::Auto);
    if cork {
        exchange.io.set_cork(true);
    }
    let result = send::stream_body(
        exchange.io,
        exchange.guard,
        body,
        &mut pacer,
        deadlines,
        out,
        &mut progress,
    )
    .await;
    if cork {
        exchange.io.set_cork(false);
    }
    ctx.route_traffic(Some(exchange.route_index))
        .bytes_out
        .add(progress.written);
    exchange.written.0 += progress.written;
    result.map_err(|cut| (cut, Vec::new()))
}

/// Opens the file `request` names beneath the root: a regular file, or a directory's index
/// when the route has one. Anything else (no such file, outside the root, a directory
/// without an index, a device or FIFO) is `None`: 404.
fn open(
    state: &RouteState,
    files: &FilesConfig,
    request: &FileRequest,
) -> Option<(File, FileFacts, String)> {
    let root = state.root.as_ref()?;
    let path = request.path.as_ref().ok()?;
    let mut file = root.open_file(path).ok()?;
    let mut meta = file.metadata().ok()?;
    let mut name_of: &[u8] = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    if meta.is_dir() {
        let index = files.index.as_deref()?;
        let mut index_path = path.clone();
        if !index_path.is_empty() {
            index_path.push(b'/');
        }
        index_path.extend_from_slice(index.as_bytes());
        file = root.open_file(&index_path).ok()?;
        meta = file.metadata().ok()?;
        name_of = index.as_bytes();
    }
    if !meta.is_file() {
        return None;
    }
    let facts = FileFacts {
        size: meta.len(),
        mtime_secs: u64::try_from(meta.mtime()).unwrap_or(0),
        mtime_nanos: u32::try_from(meta.mtime_nsec()).unwrap_or(0),
    };
    let name = String::from_utf8_lossy(name_of).into_owned();
    Some((file, facts, name))
}
