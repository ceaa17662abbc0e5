//! A request on an `upload` route: the checks before the body is read (method, name,
//! existing file, the client's uploads in progress), storing the body once the connection has
//! streamed it into the temporary file, and the 201 answer.

use std::fmt::Write as _;
use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use ringstream_protocol::http::{HttpDate, Method, Request};
use ringstream_protocol::json;

use super::name::upload_name;
use super::store::{NotStored, Stored, Upload, UploadDir, UploadSlot};
use crate::config::{Route, UploadConfig};
use crate::routes::Refused;
use crate::routes::plain::{MethodClass, Page};

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

/// An upload admitted before its body is read: the temporary file and the client's place.
#[derive(Debug)]
pub struct Admitted {
    /// The temporary file the body goes to.
    pub file: Upload,
    /// One of the client's upload places, released when dropped.
    #[allow(dead_code, reason = "held for its drop, which releases the place")]
    pub place: UploadSlot,
    /// The route's `max_upload_size`, the body's limit.
    pub max_size: u64,
}

/// Admits an upload before a byte of its body is read: 405 (method), 400 (no usable name),
/// 409 (the name exists and the route does not overwrite), 429 (every upload place of the
/// client at `address` taken), 500 (no upload directory, or the temporary file cannot be
/// created).
pub fn admit(
    upload: UploadRequest,
    config: &UploadConfig,
    dir: &Arc<UploadDir>,
    address: IpAddr,
) -> Result<Admitted, Refused> {
    if !upload.method_allowed {
        return Err(Refused::with(405, ALLOW_UPLOAD));
    }
    let Some(name) = upload.name else {
        return Err(Refused::status(400));
    };
    if !config.overwrite && dir.exists(&name) {
        return Err(Refused::status(409));
    }
    let Some(place) = dir.admit(address, config.max_uploads_per_client) else {
        return Err(Refused::with(429, RETRY_SOON));
    };
    let file = dir.begin(name).map_err(|e| {
        tracing::warn!(dir = %dir.path().display(), error = %e, "cannot create an upload file");
        Refused::status(500)
    })?;
    Ok(Admitted {
        file,
        place,
        max_size: config.max_upload_size,
    })
}

/// The status of an upload whose file could not be written: 507 when the file system is full
/// or the quota spent (RFC 4918 §11.5), 500 for any other failure. Logged once per upload.
pub fn failed_write(e: &io::Error, dir: &Path) -> u16 {
    tracing::warn!(dir = %dir.display(), error = %e, "cannot write an upload");
    match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => 507,
        _ => 500,
    }
}

/// Stores a body that arrived whole: syncs when the route asks, renames to the final name;
/// 409 when another upload took the name meanwhile, 507 or 500 when the disk fails.
pub async fn store(
    file: Upload,
    config: &UploadConfig,
    dir: &UploadDir,
) -> Result<Stored, Refused> {
    match file.finish(config.overwrite, config.fsync).await {
        Ok(stored) => Ok(stored),
        Err(NotStored::Exists) => Err(Refused::status(409)),
        Err(NotStored::Io(e)) => Err(Refused::status(failed_write(&e, dir.path()))),
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
