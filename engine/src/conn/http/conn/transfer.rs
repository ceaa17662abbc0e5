//! Files out and uploads in: the two answers that stream a body between the client and the
//! disk, under the route's limits and the buffer budget.

use std::rc::Rc;

use super::{BodyTarget, Connection, RequestInfo, Stop, UPLOAD_BUFFER};
use crate::config::RouteKind;
use crate::protections::gate::ClientSlot;
use crate::routes::files::FileRequest;
use crate::routes::files::respond as files;
use crate::routes::plain::MethodClass;
use crate::routes::upload::request::{self as upload, UploadRequest};
use crate::routes::upload::store::{Stored, WRITE_BATCH};
use crate::server::transfers::{Direction, NewTransfer};
use crate::server::transport::Transport;
use ringstream_protocol::http::BodyKind;

impl<T: Transport> Connection<T> {
    /// Answers a request on a files route: the head (with any answers queued before it) and
    /// the file's bytes leave now; a body that could not be sent whole closes the connection.
    pub(super) async fn serve_file(
        &mut self,
        file: &FileRequest,
        route: usize,
        method: MethodClass,
        close: bool,
    ) -> Result<(), Stop> {
        let ctx = Rc::clone(&self.ctx);
        let mut written = (0, 0);
        let exchange = files::Exchange {
            io: self.stream.io(),
            guard: self.stream.guard(),
            ctx: &ctx,
            route_index: route,
            client: self.client.as_ref(),
            close,
            bandwidth: &mut self.bandwidth,
            written: &mut written,
        };
        let out = std::mem::take(&mut self.out);
        let answered = files::answer(exchange, file, method, out).await;
        self.log_sent(usize::try_from(written.0).unwrap_or(usize::MAX));
        if written.1 != 0 {
            self.log_status(written.1);
        }
        match answered {
            Ok(out) => {
                self.out = out;
                Ok(())
            }
            Err(_) => Err(Stop::Close),
        }
    }

    /// Stores the body of an upload request: the route admits it before a byte is read, the
    /// body streams into its temporary file under the route's limits, and the route stores
    /// it; the temporary file is deleted on every path that does not end in the rename.
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
            ctx.route_state(route_index).and_then(|s| s.upload.as_ref()),
        ) else {
            return Err(Stop::Refuse(500));
        };
        let address = match self.client.as_ref().map(ClientSlot::address) {
            Some(address) => address,
            None => self.stream.io().peer_addr().map_err(|_| Stop::Close)?.ip(),
        };
        let mut admitted = upload::admit(upload, config, dir, address).map_err(Stop::RefuseWith)?;
        let listed = ctx.metrics.transfers().begin(NewTransfer {
            direction: Direction::Upload,
            route: &route.path,
            name: admitted.file.name(),
            client: Some(address),
            size: match request.body {
                BodyKind::Length(size) => Some(size),
                BodyKind::None | BodyKind::Chunked => None,
            },
        });
        admitted.file.list(listed);
        let mut limits = route.limits.clone();
        limits.max_body_size = admitted.max_size;
        // Large bodies are read in large pieces and written in large batches, if the buffer
        // budget holds them; otherwise in the small pieces the connection has.
        let large = UPLOAD_BUFFER.saturating_sub(self.buf.capacity()) + WRITE_BATCH;
        let guard = self.stream.guard();
        if guard.try_hold(guard.held() + large) {
            self.buf
                .reserve_exact(UPLOAD_BUFFER.saturating_sub(self.buf.len()));
        } else {
            admitted.file.write_unbatched();
        }
        let read = self
            .read_body(request, &limits, BodyTarget::Upload(&mut admitted.file))
            .await;
        // The write batch was written or dropped, and an idle connection does not keep the
        // large read buffer.
        self.give_back_read_buffer();
        read?;
        let stored = upload::store(admitted.file, config, dir)
            .await
            .map_err(Stop::RefuseWith)?;
        ctx.route_traffic(Some(route_index))
            .bytes_in
            .add(stored.size);
        Ok(stored)
    }
}
