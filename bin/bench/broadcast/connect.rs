//! Opening the broadcast load's connections before it starts: every one upgraded (and, for a
//! Socket.IO server, connected to its main namespace), a bounded number at a time; with the
//! subscribers on another node, probes until that node has joined the topic.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use compio::BufResult;
use compio::io::AsyncWriteExt;
use ringstream_protocol::ws::OpCode;

use super::super::ws::{Client, Target};
use super::member::{Framing, Member, push_client_frame, push_payload};
use super::message::{PROBE, Received};
use super::socketio::{self, CONNECT, PONG, ServerPacket};

/// Connections being opened at once before the run.
const CONNECT_CONCURRENCY: usize = 64;
/// How often a probe goes out while the subscribers' node joins the topic.
const PROBE_EVERY: Duration = Duration::from_millis(20);

/// Opens `count` connections, `CONNECT_CONCURRENCY` at a time, each ready for messages framed
/// as `framing` says.
pub(super) async fn connect_all(
    target: &Target,
    framing: Framing,
    count: usize,
) -> anyhow::Result<Vec<Client>> {
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
                    let client = open(&target, framing)
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

/// One connection, upgraded; on a Socket.IO server, connected to the main namespace too.
async fn open(target: &Target, framing: Framing) -> io::Result<Client> {
    let mut client = Client::open(target).await?;
    if let Framing::SocketIo(_) = framing {
        connect_socketio(&mut client).await?;
    }
    Ok(client)
}

/// engine.io's open packet, then the namespace connect (`40`) and its acknowledgement: the
/// server has joined the connection to its room by then.
async fn connect_socketio(client: &mut Client) -> io::Result<()> {
    let mut opened = false;
    loop {
        let (header, range) = client.read_message().await?;
        if header.opcode != OpCode::Text {
            return Err(io::Error::other(format!(
                "a {:?} frame before the Socket.IO connect",
                header.opcode
            )));
        }
        let mut out = Vec::new();
        match socketio::parse(&client.buf[range]).map_err(io::Error::other)? {
            ServerPacket::Open if !opened => {
                opened = true;
                push_client_frame(&mut out, OpCode::Text, CONNECT);
            }
            ServerPacket::Connected if opened => return Ok(()),
            ServerPacket::Ping => push_client_frame(&mut out, OpCode::Text, PONG),
            other => {
                return Err(io::Error::other(format!(
                    "{other:?} before the Socket.IO connect"
                )));
            }
        }
        let BufResult(result, _) = client.stream.write_all(out).await;
        result?;
    }
}

/// Before a run whose subscribers are on another node: `publisher` sends a probe every
/// `PROBE_EVERY` until `subscriber` receives one. A node may join a topic across the cluster
/// only once it has members of it, and a message published before that would be lost to the
/// run; after a probe crossed, none is. Every member ignores the probes it gets later.
pub(super) async fn wait_for_join(
    publisher: &mut Member,
    subscriber: &mut Member,
) -> io::Result<()> {
    let arrived = Cell::new(false);
    let framing = publisher.framing();
    let probe = async {
        let mut out = Vec::new();
        push_payload(&mut out, framing, &PROBE);
        while !arrived.get() {
            let BufResult(result, returned) = publisher.stream.write_all(out).await;
            out = returned;
            result?;
            compio::time::sleep(PROBE_EVERY).await;
        }
        Ok(())
    };
    let listen = async {
        while !arrived.get() {
            subscriber.read_more().await?;
            let mut unexpected = None;
            subscriber.take_frames(|message| match message {
                Ok(Received::Probe) => arrived.set(true),
                Ok(other) => unexpected = Some(format!("{other:?}")),
                Err(violation) => unexpected = Some(violation.to_string()),
            })?;
            if let Some(what) = unexpected {
                return Err(io::Error::other(format!("before the run: {what}")));
            }
            subscriber.flush().await?;
        }
        Ok(())
    };
    // An error on either side ends both.
    futures_util::future::try_join(probe, listen).await?;
    Ok(())
}
