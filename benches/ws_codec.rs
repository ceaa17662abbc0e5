//! WebSocket codec benchmarks: unmasking (word-at-a-time against the byte loop), the
//! session's parse-and-unmask of a stream of client frames, and permessage-deflate: one
//! message compressed afresh at the server's level (what a broadcast costs once per message
//! and window size) and inflated.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringstream_protocol::ws::deflate::{DeflateParams, Deflater, Inflater};
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

/// Hexadecimal text, as `ringstream bench broadcast` fills its messages: deflate takes it to a
/// little over half.
fn hex_text(size: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b"0123456789abcdef"[(state & 0xf) as usize]
        })
        .collect()
}

fn deflate(c: &mut Criterion) {
    let params = DeflateParams {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    };
    let mut group = c.benchmark_group("permessage_deflate");
    for size in [64usize, 512, 16 * 1024] {
        let message = hex_text(size);
        group.throughput(Throughput::Bytes(size as u64));
        // The server's compressor: level 1, reset after each message.
        let mut deflater = Deflater::new(&params, 1);
        let mut compressed = Vec::new();
        group.bench_with_input(BenchmarkId::new("compress", size), &size, |b, _| {
            b.iter(|| {
                compressed.clear();
                deflater.compress(black_box(&message), &mut compressed);
                black_box(compressed.len())
            });
        });
        // A compressor made for the message and dropped after it, as a connection without
        // context takeover would if it owned one.
        group.bench_with_input(BenchmarkId::new("compress_fresh", size), &size, |b, _| {
            b.iter(|| {
                let mut out = Vec::new();
                Deflater::new(&params, 1).compress(black_box(&message), &mut out);
                black_box(out.len())
            });
        });
        let mut inflater = Inflater::new(&params);
        let mut inflated = Vec::new();
        group.bench_with_input(BenchmarkId::new("inflate", size), &size, |b, _| {
            b.iter(|| {
                inflated.clear();
                let _ = inflater.inflate(black_box(&compressed), 1 << 20, &mut inflated);
                black_box(inflated.len())
            });
        });
    }
    group.finish();
}

criterion_group!(benches, unmask, session, deflate);
criterion_main!(benches);
