//! What the tokio servers among the examples share: one current-thread runtime (the benchmarks
//! give every server one core), a listener on the address of the first argument, and a task
//! per connection.

use std::future::Future;

use tokio::net::{TcpListener, TcpStream};

/// Listens on the first argument's address (`127.0.0.1:0` by default), prints
/// `listening on ADDR`, and spawns `serve` for every accepted connection, on one thread.
pub fn serve_each<F, Fut>(serve: F) -> std::io::Result<()>
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(&addr).await?;
        println!("listening on {}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(serve(stream));
        }
    })
}
