//! Request decoding throughput: Shoal's `decode_request` vs `redis-protocol`'s RESP2 decoder
//! on the same pipelined batch, plus the memcache text decoder.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use shoal_client::memcache::{self, McDecoded, McLimits};
use shoal_client::resp::{decode_request, encode_command, Args, Decoded, Limits};

const FRAMES: usize = 1000;

fn batch(set: bool) -> Vec<u8> {
    let mut out = BytesMut::new();
    let value = [b'v'; 32];
    for i in 0..FRAMES {
        let key = format!("key:{i:010}");
        if set {
            encode_command(&[b"SET", key.as_bytes(), &value], &mut out);
        } else {
            encode_command(&[b"GET", key.as_bytes()], &mut out);
        }
    }
    out.to_vec()
}

fn mc_batch(set: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..FRAMES {
        if set {
            out.extend_from_slice(
                format!("set key:{i:010} 0 0 32\r\n{}\r\n", "v".repeat(32)).as_bytes(),
            );
        } else {
            out.extend_from_slice(format!("get key:{i:010}\r\n").as_bytes());
        }
    }
    out
}

fn resp(c: &mut Criterion) {
    for (name, set) in [("get", false), ("set32", true)] {
        let input = batch(set);
        let mut g = c.benchmark_group(format!("resp_decode_{name}"));
        g.throughput(Throughput::Elements(FRAMES as u64));
        g.bench_function("shoal", |b| {
            let limits = Limits::default();
            let mut args = Args::new();
            b.iter(|| {
                let mut pos = 0;
                let mut n = 0;
                while let Ok(Decoded::Frame { consumed }) =
                    decode_request(&input[pos..], &limits, &mut args)
                {
                    n += args.len();
                    pos += consumed;
                }
                black_box(n)
            })
        });
        let bytes = Bytes::from(input.clone());
        g.bench_function("redis_protocol_decode_bytes", |b| {
            b.iter(|| {
                let mut pos = 0;
                let mut n = 0;
                while let Ok(Some((frame, used))) =
                    redis_protocol::resp2::decode::decode_bytes(&bytes.slice(pos..))
                {
                    n += usize::from(!matches!(
                        frame,
                        redis_protocol::resp2::types::BytesFrame::Null
                    ));
                    pos += used;
                }
                black_box(n)
            })
        });
        g.bench_function("redis_protocol_decode_range", |b| {
            b.iter(|| {
                let mut pos = 0;
                let mut n = 0;
                while let Ok(Some((_, used))) =
                    redis_protocol::resp2::decode::decode_range(&input[pos..])
                {
                    n += 1;
                    pos += used;
                }
                black_box(n)
            })
        });
        g.finish();
    }
}

fn mc(c: &mut Criterion) {
    for (name, set) in [("get", false), ("set32", true)] {
        let input = mc_batch(set);
        let mut g = c.benchmark_group(format!("memcache_decode_{name}"));
        g.throughput(Throughput::Elements(FRAMES as u64));
        g.bench_function("shoal", |b| {
            let limits = McLimits::default();
            b.iter(|| {
                let mut pos = 0;
                while let McDecoded::Request { consumed, .. } =
                    memcache::decode(&input[pos..], &limits)
                {
                    pos += consumed;
                }
                black_box(pos)
            })
        });
        g.finish();
    }
}

criterion_group!(benches, resp, mc);
criterion_main!(benches);
