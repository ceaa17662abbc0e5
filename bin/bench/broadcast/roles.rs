//! The two roles of a broadcast member: a subscriber reads, verifies and times every delivery;
//! a publisher keeps `window` of its messages outstanding and checks they come back.

use std::io;
use std::rc::Rc;
use std::time::Duration;

use compio::BufResult;
use compio::io::AsyncWriteExt;
use ringstream_protocol::ws::OpCode;

use super::super::Phase;
use super::Shared;
use super::member::{Member, push_client_frame, push_message};
use super::message::{Header, Received, encode_end_marker};

/// A subscriber: reads, verifies and times every delivery until every end marker arrived.
pub(super) async fn subscribe(mut member: Member, shared: Rc<Shared>) {
    if let Err(e) = receive(&mut member, &shared).await {
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
                Ok(Received::Message(header)) if measuring => {
                    stats.record(Duration::from_nanos(
                        received_ns.saturating_sub(header.sent_ns),
                    ));
                }
                Ok(_) => {}
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
    let mut batch = Vec::with_capacity((size + 14) * shared.window);
    let (mut sent, mut echoed) = (0u64, 0u64);
    let (mut ended, mut end_back) = (false, false);
    while !end_back {
        batch.clear();
        if !ended && shared.phase.get() == Phase::Done {
            push_client_frame(&mut batch, OpCode::Binary, &encode_end_marker(id, sent));
            ended = true;
        } else if !ended {
            let sent_ns = shared.now_ns();
            let room = window - (sent - echoed);
            for seq in sent..sent + room {
                let header = Header {
                    publisher: id,
                    seq,
                    sent_ns,
                };
                push_message(&mut batch, header, size);
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
