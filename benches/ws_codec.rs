//! WebSocket codec benchmarks: unmasking (word-at-a-time against the byte loop) and the
//! session's parse-and-unmask of a stream of client frames.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringstream_protocol::ws::mask::{apply_mask, apply_mask_bytewise};
use ringstream_protocol::ws::session::{Session, SessionLimits};
use ringstream_protocol::ws::{FrameHeader, OpCode};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const SIZES: [usize; 4] = [32, 512, 16 * 1024, 1024 * 1024];

fn unmask(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask");
    for size in SIZES {
        let mut data = vec![0x5au8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("word_at_a_time", size), &size, |b, _| {
            b.iter(|| apply_mask(black_box(&mut data), KEY, 0));
        });
        group.bench_with_input(BenchmarkId::new("bytewise", size), &size, |b, _| {
            b.iter(|| apply_mask_bytewise(black_box(&mut data), KEY, 0));
        });
    }
    group.finish();
}

/// 64 masked binary frames of `size` bytes, as a client sends them.
fn client_frames(size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..64 {
        FrameHeader {
            fin: true,
            rsv: 0,
            opcode: OpCode::Binary,
            mask: Some(KEY),
            payload_len: size as u64,
        }
        .write(&mut out);
        let start = out.len();
        out.resize(start + size, 0x42);
        apply_mask(&mut out[start..], KEY, 0);
    }
    out
}

fn session(c: &mut Criterion) {
    let mut group = c.benchmark_group("session_read_64_frames");
    for size in [32usize, 512, 16 * 1024] {
        let frames = client_frames(size);
        group.throughput(Throughput::Bytes(frames.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            let mut buf = frames.clone();
            b.iter(|| {
                buf.copy_from_slice(&frames);
                let mut session = Session::new(SessionLimits {
                    max_message_size: 1 << 20,
                    max_fragments: 128,
                });
                let mut pos = 0;
                while let Ok(Some((_, used))) = session.read(&mut buf[pos..]) {
                    pos += used;
                }
                black_box(pos)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, unmask, session);
criterion_main!(benches);
