//! A chat server on the WebSocket handler API: every message a member sends goes to every
//! member of the room, prefixed with the sender's name (`?name=ada` in the URL).
//!
//! ```text
//! cargo run --release --example ws_chat -- 127.0.0.1:9001
//! # then, in two terminals: websocat 'ws://127.0.0.1:9001/chat?name=ada'
//! ```
//!
//! It shows the pieces a handler is made of: the request head, `recv` and `send`, a
//! [`WsSender`] handed to a second task, and `close`. The route's protections (message size,
//! rates, heartbeats, the idle timeout, the drain) act before the handler sees a message. Each
//! member's mailbox is bounded: a member who cannot keep up misses messages (counted, and told)
//! instead of growing the server's memory. The room is one table behind a lock, shared by
//! every worker: fine for a chat, not the way to fan out to thousands of members.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures_channel::mpsc;
use futures_util::StreamExt;
use ringstream_engine::config::{RouteKind, ServerConfig};
use ringstream_engine::handler::{Message, WsHandler, WsSender};

/// Messages waiting for one member before the room starts dropping theirs.
const MAILBOX: usize = 256;
/// Longest name kept from the query.
const MAX_NAME: usize = 32;

/// Every member's mailbox, by member id.
#[derive(Default)]
struct Room {
    members: Mutex<HashMap<u64, mpsc::Sender<Message>>>,
    next_id: AtomicU64,
}

impl Room {
    fn join(&self) -> (u64, mpsc::Receiver<Message>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(MAILBOX);
        self.lock().insert(id, tx);
        (id, rx)
    }

    fn leave(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Puts `message` in every mailbox with room; returns how many members missed it.
    fn say(&self, message: &Message) -> usize {
        let mut missed = 0;
        for tx in self.lock().values_mut() {
            if tx.try_send(message.clone()).is_err() {
                missed += 1;
            }
        }
        missed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::Sender<Message>>> {
        // A panic elsewhere cannot leave the map half-updated: every update is one call.
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Writes a member's mailbox to their connection until either ends.
async fn deliver(mut mailbox: mpsc::Receiver<Message>, to: WsSender) {
    while let Some(message) = mailbox.next().await {
        if to.send(message).await.is_err() {
            return;
        }
    }
}

fn chat(room: Arc<Room>) -> WsHandler {
    WsHandler::new(move |mut ws| {
        let room = Arc::clone(&room);
        async move {
            let name: String = ws
                .request()
                .query_param("name")
                .filter(|name| !name.is_empty())
                .unwrap_or("anonymous")
                .chars()
                .take(MAX_NAME)
                .collect();
            let (id, mailbox) = room.join();
            ringstream_engine::task::spawn(deliver(mailbox, ws.sender()));
            room.say(&Message::text(format!("* {name} joined")));
            while let Some(message) = ws.recv().await {
                let Some(text) = message.as_text() else {
                    // Chat is text; anything else ends the conversation (1003: unsupported).
                    let _ = ws.close(1003, "text messages only").await;
                    break;
                };
                let missed = room.say(&Message::text(format!("{name}: {text}")));
                if missed > 0 {
                    let note = format!("* {missed} member(s) too slow to receive that");
                    if ws.send(note).await.is_err() {
                        break;
                    }
                }
            }
            room.leave(id);
            room.say(&Message::text(format!("* {name} left")));
        }
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into())
        .parse()?;
    let room = Arc::new(Room::default());
    let mut config = ServerConfig::new(listen).route("/chat", RouteKind::handler(chat(room)));
    // Chat lines are short; a client may say 20 things a second.
    for route in &mut config.routes {
        route.ws.max_message_size = 4096;
        route.ws.rate_limit = 20;
    }
    ringstream_engine::run(config, |addr| println!("chat on ws://{addr}/chat?name=you"))?;
    Ok(())
}
