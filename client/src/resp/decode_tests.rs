use super::*;
use crate::resp::encode_command;
use bytes::BytesMut;
use proptest::prelude::*;

type Out = Result<(Decoded, Vec<Vec<u8>>), ProtoError>;

fn dec_with(input: &[u8], limits: &Limits) -> Out {
    let mut args = Args::new();
    let d = decode_request(input, limits, &mut args)?;
    let v = args.iter(input).map(<[u8]>::to_vec).collect();
    Ok((d, v))
}

fn dec(input: &[u8]) -> Out {
    dec_with(input, &Limits::default())
}

fn frame(consumed: usize, args: &[&[u8]]) -> Out {
    Ok((
        Decoded::Frame { consumed },
        args.iter().map(|a| a.to_vec()).collect(),
    ))
}

/// Every strict prefix of a single valid request is incomplete; the whole gives `want`.
fn check_split(input: &[u8], want: &[&[u8]]) {
    for k in 0..input.len() {
        match dec(&input[..k]) {
            Ok((Decoded::Incomplete { need }, _)) => {
                if let Some(n) = need {
                    assert!(n > k && n <= input.len(), "need {n} at split {k}");
                }
            }
            other => panic!("split {k} of {input:?}: {other:?}"),
        }
    }
    assert_eq!(dec(input), frame(input.len(), want), "{input:?}");
}

#[test]
fn multibulk() {
    check_split(b"*1\r\n$4\r\nPING\r\n", &[b"PING"]);
    check_split(
        b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n",
        &[b"SET", b"key", b"value"],
    );
    check_split(b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n", &[b"GET", b""]);
    check_split(b"*1\r\n$6\r\na\r\nb\0c\r\n", &[b"a\r\nb\0c"]);
    check_split(b"*0\r\n", &[]);
    check_split(b"*-1\r\n", &[]);
    check_split(b"*-5\r\n", &[]);
    // Redis skips the two bytes after `\r` and after a payload without checking them.
    check_split(b"*1\r\n$4\rxPINGyy", &[b"PING"]);
}

#[test]
fn inline() {
    check_split(b"PING\r\n", &[b"PING"]);
    check_split(b"PING\n", &[b"PING"]);
    check_split(b"SET k v\n", &[b"SET", b"k", b"v"]);
    check_split(b"  set   k\tv  \r\n", &[b"set", b"k", b"v"]);
    check_split(b"\r\n", &[]);
    check_split(b"\n", &[]);
    check_split(b"\r\r\n", &[]);
    check_split(b"   \r\n", &[]);
    check_split(b"echo \"a b\"\r\n", &[b"echo", b"a b"]);
    check_split(b"echo \"\\x41\\x4g\\n\"\r\n", &[b"echo", b"Ax4g\n"]);
    check_split(
        b"echo \"\\r\\t\\b\\a\\\\\\\"\"\n",
        &[b"echo", b"\r\t\x08\x07\\\""],
    );
    check_split(b"echo 'a\\'b'\r\n", &[b"echo", b"a'b"]);
    check_split(b"echo 'a\\\\b'\r\n", &[b"echo", b"a\\\\b"]);
    check_split(b"echo \"\" x\r\n", &[b"echo", b"", b"x"]);
    check_split(b"echo ab\"c d\"\r\n", &[b"echo", b"abc d"]);
    check_split(b"echo \x0bx\r\n", &[b"echo", b"x"]);
    check_split(b"echo a\x0bb\r\n", &[b"echo", b"a\x0bb"]);
    check_split(b"echo a\rb\r\n", &[b"echo", b"a", b"b"]);
    check_split(b"echo a\r\r\n", &[b"echo", b"a"]);
    check_split(b"$100000000000\r\n", &[b"$100000000000"]);
}

#[test]
fn errors_match_redis() {
    use ProtoError as E;
    // Each case checked against redis-server 7.0.15.
    let cases: &[(&[u8], ProtoError)] = &[
        (b"*x\r\n", E::InvalidMultibulkLength),
        (b"*\r\n", E::InvalidMultibulkLength),
        (b"* 1\r\n", E::InvalidMultibulkLength),
        (b"*00\r\n", E::InvalidMultibulkLength),
        (b"*-0\r\n", E::InvalidMultibulkLength),
        (b"*2147483648\r\n", E::InvalidMultibulkLength),
        (b"*2\r\n$x\r\n", E::InvalidBulkLength),
        (b"*1\r\n$-1\r\n", E::InvalidBulkLength),
        (b"*1\r\n$04\r\nPING\r\n", E::InvalidBulkLength),
        (b"*1\r\n$+4\r\nPING\r\n", E::InvalidBulkLength),
        (b"*1\r\n$536870913\r\n", E::InvalidBulkLength),
        (b"*1\r\n$100000000000\r\n", E::InvalidBulkLength),
        (b"*1\r\n$3\nfoo\r\n", E::InvalidBulkLength),
        (b"*2\r\n$3\r\nfoo\r\n+bar\r\n", E::ExpectedDollar(b'+')),
        (b"*1\r\n\r\n", E::ExpectedDollar(b' ')),
        (b"*1\r\n\n\r\n", E::ExpectedDollar(b' ')),
        (b"*1\r\n\xff\r\n", E::ExpectedDollar(0xff)),
        (b"set \"a b\r\n", E::UnbalancedQuotes),
        (b"a\"b\"c d\r\n", E::UnbalancedQuotes),
        (b"echo \"a\"b\r\n", E::UnbalancedQuotes),
        (b"echo 'a\r\n", E::UnbalancedQuotes),
        (b"echo 'a'b\r\n", E::UnbalancedQuotes),
    ];
    for (input, want) in cases {
        assert_eq!(dec(input), Err(*want), "{input:?}");
    }
    assert_eq!(
        ProtoError::ExpectedDollar(b' ').reply(),
        b"-ERR Protocol error: expected '$', got ' '\r\n"
    );
}

#[test]
fn size_limits() {
    let big = vec![b'a'; 65536];
    assert_eq!(dec(&big), Ok((Decoded::Incomplete { need: None }, vec![])));
    let big = vec![b'a'; 65537];
    assert_eq!(dec(&big), Err(ProtoError::TooBigInlineRequest));
    // A long line that is already terminated is accepted (Redis does the same when it
    // arrives in one read).
    let mut line = vec![b'a'; 70000];
    line.extend_from_slice(b"\r\n");
    assert_eq!(dec(&line).unwrap().1.len(), 1);

    let mut mb = b"*".to_vec();
    mb.extend(std::iter::repeat_n(b'1', 65536));
    assert_eq!(dec(&mb), Err(ProtoError::TooBigMbulkCount));
    let mut b = b"*1\r\n$".to_vec();
    b.extend(std::iter::repeat_n(b'1', 65536));
    assert_eq!(dec(&b), Err(ProtoError::TooBigBulkCount));
    let mut b = b"*1\r\n".to_vec();
    b.extend(std::iter::repeat_n(b'$', 65537));
    assert_eq!(dec(&b), Err(ProtoError::TooBigBulkCount));
    // NUL hides the terminator, as with Redis' strchr.
    assert_eq!(
        dec(b"PI\0NG\r\n"),
        Ok((Decoded::Incomplete { need: None }, vec![]))
    );
    assert_eq!(
        dec(b"*1\0\r\n"),
        Ok((Decoded::Incomplete { need: None }, vec![]))
    );
    assert_eq!(
        dec(b"*1\r\n\0\r\n"),
        Ok((Decoded::Incomplete { need: None }, vec![]))
    );
    let mut nul = b"PI\0NG\r\n".to_vec();
    nul.resize(65537, b'x');
    assert_eq!(dec(&nul), Err(ProtoError::TooBigInlineRequest));
}

#[test]
fn huge_declared_lengths_do_not_allocate() {
    // Accepted bulk length: only reports how much is needed.
    assert_eq!(
        dec(b"*1\r\n$536870912\r\nab"),
        Ok((
            Decoded::Incomplete {
                need: Some(536870912 + 16 + 2)
            },
            vec![]
        ))
    );
    let mut args = Args::new();
    let r = decode_request(b"*2147483647\r\n$1\r\na\r\n", &Limits::default(), &mut args);
    assert_eq!(r, Ok(Decoded::Incomplete { need: None }));
    assert!(args.spans.capacity() < 1024);
    let limits = Limits {
        max_bulk_len: 10,
        max_multibulk_len: 2,
        ..Limits::default()
    };
    assert_eq!(
        dec_with(b"*1\r\n$11\r\n", &limits),
        Err(ProtoError::InvalidBulkLength)
    );
    assert_eq!(
        dec_with(b"*3\r\n", &limits),
        Err(ProtoError::InvalidMultibulkLength)
    );
    assert_eq!(
        dec_with(b"*2\r\n$10\r\n0123456789\r\n$0\r\n\r\n", &limits),
        frame(27, &[b"0123456789", b""])
    );
}

#[test]
fn pipelined() {
    let mut buf = Vec::new();
    let mut want: Vec<Vec<Vec<u8>>> = Vec::new();
    for i in 0..50 {
        let key = format!("key:{i}");
        match i % 4 {
            0 => buf.extend_from_slice(format!("GET {key}\r\n").as_bytes()),
            1 => buf.extend_from_slice(
                format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).as_bytes(),
            ),
            2 => buf.extend_from_slice(format!("SET {key} \"v {i}\"\n").as_bytes()),
            _ => buf.extend_from_slice(b"*0\r\n"),
        }
        want.push(match i % 4 {
            0 | 1 => vec![b"GET".to_vec(), key.into_bytes()],
            2 => vec![
                b"SET".to_vec(),
                key.into_bytes(),
                format!("v {i}").into_bytes(),
            ],
            _ => vec![],
        });
    }
    let mut args = Args::new();
    let mut pos = 0;
    for w in want {
        match decode_request(&buf[pos..], &Limits::default(), &mut args) {
            Ok(Decoded::Frame { consumed }) => {
                let got: Vec<Vec<u8>> = args.iter(&buf[pos..]).map(<[u8]>::to_vec).collect();
                assert_eq!(got, w);
                pos += consumed;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(pos, buf.len());
    assert_eq!(
        decode_request(&buf[pos..], &Limits::default(), &mut args),
        Ok(Decoded::Incomplete { need: None })
    );
}

#[test]
fn string2ll_like_redis() {
    assert_eq!(string2ll(b"0"), Some(0));
    assert_eq!(string2ll(b"-1"), Some(-1));
    assert_eq!(string2ll(b"9223372036854775807"), Some(i64::MAX));
    assert_eq!(string2ll(b"-9223372036854775808"), Some(i64::MIN));
    for bad in [
        &b""[..],
        b"-",
        b"-0",
        b"01",
        b"+1",
        b" 1",
        b"1 ",
        b"9223372036854775808",
        b"-9223372036854775809",
        b"99999999999999999999",
        b"1a",
    ] {
        assert_eq!(string2ll(bad), None, "{bad:?}");
    }
}

proptest! {
    #[test]
    fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut args = Args::new();
        let limits = Limits { max_inline_len: 64, max_bulk_len: 64, ..Limits::default() };
        let mut pos = 0;
        while let Ok(Decoded::Frame { consumed }) = decode_request(&data[pos..], &limits, &mut args) {
            prop_assert!(consumed > 0 && pos + consumed <= data.len());
            for a in args.iter(&data[pos..]) {
                prop_assert!(a.len() <= data.len());
            }
            pos += consumed;
        }
    }

    #[test]
    fn never_panics_structured(
        parts in proptest::collection::vec(
            prop_oneof![
                Just(&b"*"[..]), Just(&b"$"[..]), Just(&b"\r\n"[..]), Just(&b"\r"[..]),
                Just(&b"\n"[..]), Just(&b"1"[..]), Just(&b"3"[..]), Just(&b"-"[..]),
                Just(&b"\""[..]), Just(&b"'"[..]), Just(&b"\\"[..]), Just(&b"x"[..]),
                Just(&b" "[..]), Just(&b"\0"[..]), Just(&b"abc"[..]),
            ],
            0..40,
        )
    ) {
        let data = parts.concat();
        let mut args = Args::new();
        let _ = decode_request(&data, &Limits::default(), &mut args);
    }

    #[test]
    fn encode_decode_round_trip(
        cmd in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..8)
    ) {
        let refs: Vec<&[u8]> = cmd.iter().map(Vec::as_slice).collect();
        let mut out = BytesMut::new();
        encode_command(&refs, &mut out);
        out.extend_from_slice(b"PING\r\n");
        let mut args = Args::new();
        let r = decode_request(&out, &Limits::default(), &mut args).unwrap();
        let Decoded::Frame { consumed } = r else { panic!("{r:?}") };
        prop_assert_eq!(consumed, out.len() - 6);
        let got: Vec<Vec<u8>> = args.iter(&out).map(<[u8]>::to_vec).collect();
        prop_assert_eq!(got, cmd);
        // Every strict prefix is incomplete.
        for k in 0..consumed {
            let r = decode_request(&out[..k], &Limits::default(), &mut args).unwrap();
            let incomplete = matches!(r, Decoded::Incomplete { .. });
            prop_assert!(incomplete);
        }
    }
}
