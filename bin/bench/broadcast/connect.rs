//! Opening the broadcast load's connections before it starts: every one upgraded, a bounded
//! number at a time.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use anyhow::{anyhow, bail};

use super::super::ws::{Client, Target};

/// Connections being opened at once before the run.
const CONNECT_CONCURRENCY: usize = 64;

/// Opens and upgrades `count` connections, `CONNECT_CONCURRENCY` at a time.
pub(super) async fn connect_all(target: &Target, count: usize) -> anyhow::Result<Vec<Client>> {
    let next = Rc::new(Cell::new(0usize));
    let opened: Rc<RefCell<Vec<Option<Client>>>> =
        Rc::new(RefCell::new((0..count).map(|_| None).collect()));
    let workers: Vec<_> = (0..CONNECT_CONCURRENCY.min(count))
        .map(|_| {
            let (target, next, opened) = (target.clone(), Rc::clone(&next), Rc::clone(&opened));
            compio::runtime::spawn(async move {
                loop {
                    let i = next.get();
                    if i >= count {
                        return Ok::<(), String>(());
                    }
                    next.set(i + 1);
                    let client = Client::open(&target)
                        .await
                        .map_err(|e| format!("connection {} of {count}: {e}", i + 1))?;
                    opened.borrow_mut()[i] = Some(client);
                }
            })
        })
        .collect();
    for worker in workers {
        worker
            .await
            .map_err(|e| anyhow!("connecting: {e}"))?
            .map_err(anyhow::Error::msg)?;
    }
    let clients = opened.take().into_iter().flatten().collect::<Vec<_>>();
    if clients.len() != count {
        bail!("opened {} of {count} connections", clients.len());
    }
    Ok(clients)
}
