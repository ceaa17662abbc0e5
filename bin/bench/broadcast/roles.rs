//! The two roles of a broadcast member: a subscriber reads, verifies and times every delivery;
//! a publisher keeps `window` of its messages outstanding and checks they come back.
//!
//! A message stays outstanding until it is back at its publisher and every subscriber has it
//! ([`super::watch`]): on one server both come at about the same time, across nodes the second
//! bounds what waits between them.

use std::io;
use std::rc::Rc;
use std::time::Duration;

use compio::BufResult;
use compio::io::AsyncWriteExt;

use super::super::Phase;
use super::Shared;
use super::member::{Member, push_message, push_payload};
use super::message::{Header, Received, encode_end_marker};

/// How long a publisher whose window is full waits for the subscribers before it looks at the
/// phase again.
const WATCH_POLL: Duration = Duration::from_millis(50);

/// A subscriber: reads, verifies and times every delivery until every end marker arrived, and
/// tells the publishers how far it got.
pub(super) async fn subscribe(mut member: Member, shared: Rc<Shared>) {
    if let Err(e) = receive(&mut member, &shared).await {
        // The publishers stop waiting for the subscribers.
        shared.watch.close();
        return shared.stats.borrow_mut().error(format!("subscriber: {e}"));
    }
    if let Err(e) = member.close().await {
        shared
            .stats
            .borrow_mut()
            .error(format!("subscriber close: {e}"));
    }
}

/// Reads until every publisher's end marker arrived, recording deliveries while measuring.
async fn receive(member: &mut Member, shared: &Shared) -> io::Result<()> {
    while !member.verifier.all_ended() {
        member.read_more().await?;
        // One clock read per read: every frame it brought arrived at the same time.
        let received_ns = shared.now_ns();
        let measuring = shared.phase.get() == Phase::Measure;
        {
            let mut stats = shared.stats.borrow_mut();
            member.take_frames(|message| match message {
                Ok(Received::Message(header)) => {
                    shared.watch.arrived(header.publisher, header.seq);
                    if measuring {
                        stats.record(Duration::from_nanos(
                            received_ns.saturating_sub(header.sent_ns),
                        ));
                    }
                }
                Ok(Received::End { .. } | Received::Probe) => {}
                Err(violation) => stats.error(violation.to_string()),
            })?;
        }
        member.flush().await?;
    }
    Ok(())
}

/// Publisher `id`: keeps `window` messages outstanding until the measurement ends, then sends
/// its end marker and waits for it to come back.
pub(super) async fn publish(mut member: Member, id: u64, shared: Rc<Shared>) {
    if let Err(e) = send_and_receive(&mut member, id, &shared).await {
        return shared
            .stats
            .borrow_mut()
            .error(format!("publisher {id}: {e}"));
    }
    if let Err(e) = member.close().await {
        shared
            .stats
            .borrow_mut()
            .error(format!("publisher {id} close: {e}"));
    }
}

/// Publishes until the measurement ends, then sends the end marker and reads until it is back.
async fn send_and_receive(member: &mut Member, id: u64, shared: &Shared) -> io::Result<()> {
    let (size, window) = (shared.size, shared.window as u64);
    let framing = member.framing();
    let mut batch = Vec::with_capacity((size + 14) * shared.window);
    let (mut sent, mut echoed) = (0u64, 0u64);
    let (mut ended, mut end_back) = (false, false);
    while !end_back {
        batch.clear();
        if !ended && shared.phase.get() == Phase::Done {
            push_payload(&mut batch, framing, &encode_end_marker(id, sent));
            ended = true;
        } else if !ended {
            let sent_ns = shared.now_ns();
            let room = window - (sent - arrived(echoed, shared.watch.everyone(id)));
            for seq in sent..sent + room {
                let header = Header {
                    publisher: id,
                    seq,
                    sent_ns,
                };
                push_message(&mut batch, framing, header, size);
            }
            sent += room;
            if shared.phase.get() == Phase::Measure {
                shared.published.set(shared.published.get() + room);
            }
        }
        if !batch.is_empty() {
            let BufResult(result, returned) = member.stream.write_all(batch).await;
            batch = returned;
            result?;
        }
        if !ended && echoed == sent {
            // Every message is back here and the window is still full: a subscriber is behind.
            let seen = shared.watch.everyone(id).unwrap_or(sent);
            // Past the poll, the loop looks at the phase and waits again.
            let _ = compio::time::timeout(WATCH_POLL, shared.watch.wait_past(id, seen)).await;
            continue;
        }
        member.read_more().await?;
        member.take_frames(|message| match message {
            Ok(Received::Message(header)) if header.publisher == id => echoed += 1,
            Ok(Received::End { publisher }) if publisher == id => end_back = true,
            Ok(_) => {}
            Err(violation) => shared.stats.borrow_mut().error(violation.to_string()),
        })?;
        member.flush().await?;
    }
    Ok(())
}

/// How many of a publisher's messages are no longer outstanding: back at the publisher
/// (`echoed`) and at every subscriber (`everyone`, `None` once a subscriber stopped).
fn arrived(echoed: u64, everyone: Option<u64>) -> u64 {
    everyone.map_or(echoed, |everyone| everyone.min(echoed))
}

#[cfg(test)]
mod tests {
    use super::arrived;

    #[test]
    fn a_message_is_outstanding_until_it_reached_both_ends() {
        assert_eq!(arrived(10, Some(4)), 4);
        assert_eq!(arrived(4, Some(10)), 4);
        // A subscriber stopped: the publisher's own copies count alone.
        assert_eq!(arrived(10, None), 10);
    }
}
