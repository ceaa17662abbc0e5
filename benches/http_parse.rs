//! HTTP/1.1 codec benchmarks: request heads, response heads, chunked bodies.

use std::hint::black_box;
use std::mem::MaybeUninit;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringstream_protocol::http::{
    BodyDecoder, BodyKind, HEADER_SLOTS, HeadLimits, HttpDate, parse_request, write_response_head,
};

/// A head like a browser's navigation request: about 500 bytes, 12 fields.
const BROWSER_GET: &[u8] =
    b"GET /articles/2024/io-uring-http-servers?ref=front&utm_source=feed HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://www.example.com/\r\n\
Connection: keep-alive\r\n\
Cookie: session=4f1c2a9e8b7d6c5e; theme=dark; consent=1\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-Site: same-origin\r\n\r\n";

/// The smallest valid HTTP/1.1 request, as a health checker sends it.
const HEALTH_GET: &[u8] = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";

fn parse_heads(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_request");
    let limits = HeadLimits::default();
    for (name, head) in [("browser_get", BROWSER_GET), ("health_get", HEALTH_GET)] {
        group.throughput(Throughput::Bytes(head.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), head, |b, head| {
            b.iter(|| {
                let mut slots = [const { MaybeUninit::uninit() }; HEADER_SLOTS];
                let parsed = parse_request(black_box(head), &mut slots, &limits);
                match parsed {
                    Ok(Some(request)) => request.head_len,
                    _ => panic!("benchmark head must parse"),
                }
            });
        });
    }
    // httparse alone, for the cost of the checks on top of it.
    for (name, head) in [("browser_get", BROWSER_GET), ("health_get", HEALTH_GET)] {
        group.throughput(Throughput::Bytes(head.len() as u64));
        group.bench_with_input(BenchmarkId::new("httparse_only", name), head, |b, head| {
            b.iter(|| {
                let mut slots = [const { MaybeUninit::uninit() }; HEADER_SLOTS];
                let mut request = httparse::Request::new(&mut []);
                request.parse_with_uninit_headers(black_box(head), &mut slots)
            });
        });
    }
    group.finish();
}

fn write_heads(c: &mut Criterion) {
    let date = HttpDate::from_unix_secs(1_767_225_599);
    let headers: &[(&str, &[u8])] = &[
        ("Content-Type", b"text/html; charset=utf-8"),
        ("Cache-Control", b"no-cache"),
    ];
    let mut out = Vec::with_capacity(512);
    c.bench_function("write_response_head", |b| {
        b.iter(|| {
            out.clear();
            write_response_head(&mut out, 200, &date, black_box(headers), Some(1234), false);
            out.len()
        });
    });
    c.bench_function("http_date", |b| {
        b.iter(|| HttpDate::from_unix_secs(black_box(1_767_225_599)));
    });
}

/// A 64 KiB body in 4 KiB chunks.
fn chunked_body() -> Vec<u8> {
    let mut encoded = Vec::new();
    for i in 0..16u8 {
        encoded.extend_from_slice(b"1000\r\n");
        encoded.extend(std::iter::repeat_n(i, 4096));
        encoded.extend_from_slice(b"\r\n");
    }
    encoded.extend_from_slice(b"0\r\n\r\n");
    encoded
}

fn decode_chunked(c: &mut Criterion) {
    let encoded = chunked_body();
    let mut group = c.benchmark_group("decode_chunked");
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    group.bench_function("64KiB_in_4KiB_chunks", |b| {
        b.iter(|| {
            let mut decoder = BodyDecoder::new(BodyKind::Chunked, u64::MAX);
            let mut input = black_box(&encoded[..]);
            let mut body_len = 0;
            loop {
                let decoded = decoder.decode(input).expect("valid body");
                body_len += decoded.data.len();
                input = &input[decoded.consumed..];
                if decoded.done {
                    break body_len;
                }
            }
        });
    });
    group.finish();
}

criterion_group!(benches, parse_heads, write_heads, decode_chunked);
criterion_main!(benches);
