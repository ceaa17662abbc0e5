//! A request on an `upload` route, for its connection: the checks before the body is read
//! (method, name, existing file, the client's uploads in progress), the body streamed to
//! the temporary file, and the 201 answer.

use std::fmt::Write as _;
use std::rc::Rc;

use ringstream_protocol::http::{HttpDate, Method, Request};

use super::{BodyTarget, Connection, RequestInfo, Stop};
use crate::config::{Route, RouteKind};
use crate::gate::ClientSlot;
use crate::http::apps::{MethodClass, Page};
use crate::transport::Transport;
use crate::upload::name::upload_name;
use crate::upload::store::{NotStored, Stored};
use ringstream_protocol::json;

/// `Allow` of a 405 on an upload route.
const ALLOW_UPLOAD: &[(&str, &[u8])] = &[("Allow", b"PUT, POST")];
/// `Retry-After` of a 429 for a client with every upload place taken.
const RETRY_SOON: &[(&str, &[u8])] = &[("Retry-After", b"1")];

/// What an upload request's head asks.
#[derive(Debug)]
pub struct UploadRequest {
    /// The sanitized name to store under, if the path names one.
    name: Option<String>,
    /// `PUT` or `POST`.
    method_allowed: bool,
}

impl UploadRequest {
    /// Captures what `request` asks of the upload route `route`.
    pub fn capture(request: &Request<'_, '_>, route: &Route) -> Self {
        Self {
            name: upload_name(request.path(), &route.path),
            method_allowed: matches!(request.method, Method::Put | Method::Post),
        }
    }
}

impl<T: Transport> Connection<T> {
    /// Stores the body of an upload request: 405, 400, 409 and 429 are answered before a
    /// byte of it is read, 413 as soon as it is known to be too large, 408 for a slow one;
    /// the temporary file is deleted on every path that does not end in the rename.
    pub(super) async fn store_upload(
        &mut self,
        request: &RequestInfo,
        upload: UploadRequest,
        route_index: usize,
    ) -> Result<Stored, Stop> {
        let ctx = Rc::clone(&self.ctx);
        let route = &ctx.router.routes()[route_index];
        let (RouteKind::Upload(config), Some(dir)) = (
            &route.kind,
            ctx.routes.get(route_index).and_then(|s| s.upload.as_ref()),
        ) else {
            return Err(Stop::Refuse(500));
        };
        if !upload.method_allowed {
            return Err(Stop::RefuseWith(405, ALLOW_UPLOAD));
        }
        let Some(name) = upload.name else {
            return Err(Stop::Refuse(400));
        };
        if !config.overwrite && dir.exists(&name) {
            return Err(Stop::Refuse(409));
        }
        let address = match self.client.as_ref().map(ClientSlot::address) {
            Some(address) => address,
            None => self.io.peer_addr().map_err(|_| Stop::Close)?.ip(),
        };
        let Some(_place) = dir.admit(address, config.max_uploads_per_client) else {
            return Err(Stop::RefuseWith(429, RETRY_SOON));
        };
        let mut file = dir.begin(name).map_err(|e| {
            tracing::warn!(dir = %dir.path().display(), error = %e, "cannot create an upload file");
            Stop::Refuse(500)
        })?;
        let mut limits = route.limits.clone();
        limits.max_body_size = config.max_upload_size;
        let read = self
            .read_body(request, &limits, BodyTarget::Upload(&mut file))
            .await;
        // The large read buffer of the body is not kept by an idle connection.
        self.buf
            .shrink_to(super::INITIAL_BUFFER.max(self.buf.len()));
        read?;
        match file.finish(config.overwrite, config.fsync).await {
            Ok(stored) => {
                let traffic = ctx.counters().route(Some(route_index));
                traffic.bytes_in.add(stored.size);
                Ok(stored)
            }
            Err(NotStored::Exists) => Err(Stop::Refuse(409)),
            Err(NotStored::Io(e)) => {
                tracing::warn!(dir = %dir.path().display(), error = %e, "cannot store an upload");
                Err(Stop::Refuse(500))
            }
        }
    }
}

/// Appends the 201 answer: `{"name":..,"size":..,"sha256":..}` with `Location`.
pub fn created(stored: &Stored, route: &Route, date: &HttpDate, close: bool, out: &mut Vec<u8>) {
    let mut body = String::with_capacity(128 + stored.name.len());
    body.push_str("{\"name\":");
    json::push_string(&mut body, &stored.name);
    let _ = write!(
        body,
        ",\"size\":{},\"sha256\":\"{}\"}}",
        stored.size, stored.sha256
    );
    let location = format!("{}{}", route.path, stored.name);
    let headers: [(&str, &[u8]); 1] = [("Location", location.as_bytes())];
    let page = Page {
        method: MethodClass::Other,
        date,
        close,
        extra: &headers,
    };
    page.write(201, b"application/json", body.as_bytes(), out);
}
