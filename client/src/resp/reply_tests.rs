use super::*;
use crate::resp::ReplyWriter;
use proptest::prelude::*;

fn decode_all(bytes: &[u8], proto: Proto) -> Vec<Value> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(v) = decode_reply(&mut buf, proto).unwrap() {
        out.push(v);
    }
    assert!(buf.is_empty(), "left {buf:?}");
    out
}

fn write(v: &Value, w: &mut ReplyWriter<'_>) {
    match v {
        Value::Simple(s) => w.simple(s),
        Value::Error(e) => w.error(e),
        Value::Int(n) => w.int(*n),
        Value::Bulk(b) => w.bulk(b),
        Value::Nil => w.null(),
        Value::Array(items) => {
            w.array(items.len());
            items.iter().for_each(|i| write(i, w));
        }
        Value::Map(pairs) => {
            w.map(pairs.len());
            for (k, v) in pairs {
                write(k, w);
                write(v, w);
            }
        }
        Value::Set(items) => {
            w.set(items.len());
            items.iter().for_each(|i| write(i, w));
        }
        Value::Push(items) => {
            w.push(items.len());
            items.iter().for_each(|i| write(i, w));
        }
        Value::Double(d) => w.double(*d),
        Value::Bool(b) => w.boolean(*b),
        Value::Verbatim(t) => w.verbatim(b"txt", t),
        Value::BigNumber(_) => unreachable!("not generated"),
    }
}

#[test]
fn literal_replies_resp3() {
    let got = decode_all(
        b"+OK\r\n-ERR x\r\n:5\r\n$3\r\nfoo\r\n_\r\n,1.5\r\n#t\r\n=9\r\ntxt:hello\r\n(123\r\n*1\r\n:1\r\n",
        Proto::Resp3,
    );
    assert_eq!(
        got,
        vec![
            Value::Simple(Bytes::from_static(b"OK")),
            Value::Error(Bytes::from_static(b"ERR x")),
            Value::Int(5),
            Value::Bulk(Bytes::from_static(b"foo")),
            Value::Nil,
            Value::Double(1.5),
            Value::Bool(true),
            Value::Verbatim(Bytes::from_static(b"hello")),
            Value::BigNumber(Bytes::from_static(b"123")),
            Value::Array(vec![Value::Int(1)]),
        ]
    );
    // redis-protocol's RESP3 decoder rejects RESP2 nulls (Redis 7.0 sends `_` in RESP3).
    assert_eq!(
        decode_all(b"$-1\r\n*-1\r\n", Proto::Resp2),
        vec![Value::Nil, Value::Nil]
    );
    let mut buf = BytesMut::from(&b"$5\r\nab"[..]);
    assert_eq!(decode_reply(&mut buf, Proto::Resp2), Ok(None));
    assert_eq!(buf.len(), 6);
    let mut buf = BytesMut::from(&b"?bad\r\n"[..]);
    assert_eq!(
        decode_reply(&mut buf, Proto::Resp2),
        Err(ProtoError::InvalidReply)
    );
}

#[test]
fn encode_command_bytes() {
    let mut out = BytesMut::new();
    encode_command(&[b"SET", b"k", b""], &mut out);
    assert_eq!(&out[..], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
}

fn leaf() -> impl Strategy<Value = Value> {
    let bytes = proptest::collection::vec(any::<u8>(), 0..20).prop_map(Bytes::from);
    let text = "[a-zA-Z0-9 ]{0,12}".prop_map(Bytes::from);
    prop_oneof![
        text.clone().prop_map(Value::Simple),
        "ERR [a-z ]{0,10}".prop_map(|s| Value::Error(Bytes::from(s))),
        any::<i64>().prop_map(Value::Int),
        bytes.prop_map(Value::Bulk),
        Just(Value::Nil),
        (-1e300f64..1e300).prop_map(Value::Double),
        any::<bool>().prop_map(Value::Bool),
        text.prop_map(Value::Verbatim),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Push),
        ]
    })
}

/// What a RESP2 client sees for a value written by a RESP2 connection.
fn as_resp2(v: &Value) -> Value {
    let mut tmp = Vec::new();
    match v {
        Value::Double(d) => {
            crate::resp::format_double(*d, &mut tmp);
            Value::Bulk(Bytes::from(tmp))
        }
        Value::Bool(b) => Value::Int(i64::from(*b)),
        Value::Verbatim(t) => Value::Bulk(t.clone()),
        Value::Array(items) | Value::Push(items) | Value::Set(items) => {
            Value::Array(items.iter().map(as_resp2).collect())
        }
        other => other.clone(),
    }
}

/// Doubles survive `%.17g` exactly.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) | (Value::Push(x), Value::Push(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        _ => a == b,
    }
}

proptest! {
    #[test]
    fn reply_round_trip(vals in proptest::collection::vec(value(), 1..5)) {
        for proto in [Proto::Resp2, Proto::Resp3] {
            let mut buf = BytesMut::new();
            let mut w = ReplyWriter::new(&mut buf, proto);
            vals.iter().for_each(|v| write(v, &mut w));
            let bytes = buf.to_vec();
            let got = decode_all(&bytes, proto);
            let want: Vec<Value> = match proto {
                Proto::Resp2 => vals.iter().map(as_resp2).collect(),
                Proto::Resp3 => vals.clone(),
            };
            prop_assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                prop_assert!(same(g, w), "{:?} vs {:?}", g, w);
            }
        }
    }

    #[test]
    fn map_round_trip(pairs in proptest::collection::btree_map("[a-z]{1,6}", any::<i64>(), 0..6)) {
        let mut buf = BytesMut::new();
        let mut w = ReplyWriter::new(&mut buf, Proto::Resp3);
        w.map(pairs.len());
        for (k, v) in &pairs {
            w.bulk(k.as_bytes());
            w.int(*v);
        }
        let got = decode_all(&buf, Proto::Resp3);
        let Value::Map(mut got) = got[0].clone() else { panic!() };
        got.sort_by(|a, b| format!("{:?}", a.0).cmp(&format!("{:?}", b.0)));
        let want: Vec<(Value, Value)> = pairs
            .iter()
            .map(|(k, v)| (Value::Bulk(Bytes::from(k.clone())), Value::Int(*v)))
            .collect();
        prop_assert_eq!(got, want);
    }
}
