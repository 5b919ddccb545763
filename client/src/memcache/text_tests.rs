use super::*;
use crate::memcache::errors::*;
use crate::memcache::{MetaCmd, MetaRequest};
use proptest::prelude::*;
use std::borrow::Cow;

fn d(input: &[u8]) -> McDecoded<'_> {
    decode(input, &McLimits::default())
}

fn e(reply: &'static [u8], consume: usize) -> McDecoded<'static> {
    McDecoded::Error {
        reply,
        consume,
        close: false,
    }
}

/// Every strict prefix is incomplete; the whole input decodes to one request.
fn check_split(input: &[u8]) -> Request<'_> {
    for k in 0..input.len() {
        assert_eq!(
            d(&input[..k]),
            McDecoded::Incomplete,
            "split {k} of {input:?}"
        );
    }
    match d(input) {
        McDecoded::Request { req, consumed } => {
            assert_eq!(consumed, input.len(), "{input:?}");
            req
        }
        other => panic!("{input:?}: {other:?}"),
    }
}

fn keys(r: &Request<'_>) -> Vec<Vec<u8>> {
    match r {
        Request::Get { keys, .. } | Request::Gat { keys, .. } => {
            keys.iter().map(<[u8]>::to_vec).collect()
        }
        _ => panic!("{r:?}"),
    }
}

#[test]
fn text_commands() {
    let r = check_split(b"get a\r\n");
    assert!(matches!(r, Request::Get { cas: false, .. }));
    assert_eq!(keys(&r), vec![b"a".to_vec()]);
    let r = check_split(b"gets a b  c\n");
    assert!(matches!(r, Request::Get { cas: true, .. }));
    assert_eq!(keys(&r), vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    let r = check_split(b"gat 10 a\r\n");
    assert!(matches!(
        r,
        Request::Gat {
            exptime: 10,
            cas: false,
            ..
        }
    ));
    let r = check_split(b"gats 10\r\n");
    assert!(matches!(r, Request::Gat { cas: true, .. }));
    assert!(keys(&r).is_empty());
    // More keys than memcached's 24 token slots.
    let many: Vec<u8> = (0..100)
        .flat_map(|i| format!(" k{i}").into_bytes())
        .collect();
    let line = [&b"get"[..], &many, b"\r\n"].concat();
    assert_eq!(keys(&check_split(&line)).len(), 100);

    assert_eq!(
        check_split(b"set a 0 0 1\r\nx\r\n"),
        Request::Store {
            kind: StoreKind::Set,
            key: b"a",
            flags: 0,
            exptime: 0,
            data: b"x",
            cas_unique: 0,
            noreply: false
        }
    );
    assert_eq!(
        check_split(b"cas k 5 -1 3 77 noreply\r\na\r\n\r\n"),
        Request::Store {
            kind: StoreKind::Cas,
            key: b"k",
            flags: 5,
            exptime: -1,
            data: b"a\r\n",
            cas_unique: 77,
            noreply: true
        }
    );
    for (cmd, kind) in [
        ("add", StoreKind::Add),
        ("replace", StoreKind::Replace),
        ("append", StoreKind::Append),
        ("prepend", StoreKind::Prepend),
    ] {
        let input = format!("{cmd} k 1 2 0\r\n\r\n");
        match check_split(input.as_bytes()) {
            Request::Store { kind: k, data, .. } => {
                assert_eq!(k, kind);
                assert_eq!(data, b"");
            }
            other => panic!("{other:?}"),
        }
    }
    // memcached's strtoul/strtol quirks (all accepted by 1.6.18).
    for (line, flags, exptime) in [
        (&b"set a 4294967296 0 1\r\nx\r\n"[..], 0u32, 0i64),
        (b"set a -0 0 1\r\nx\r\n", 0, 0),
        (b"set a 0 -2147483649 1\r\nx\r\n", 0, 2147483647),
        (b"set a 0 2147483648 1\r\nx\r\n", 0, -2147483648),
        (b"set a 0\t 0 1\r\nx\r\n", 0, 0),
        (b"set a 0 0 01\r\nx\r\n", 0, 0),
        (b"set a 0 0 +1\r\nx\r\n", 0, 0),
        (b"set a 0 0 1 foo\r\nx\r\n", 0, 0),
        (b"set  a  0 0 1\r\nx\r\n", 0, 0),
    ] {
        match check_split(line) {
            Request::Store {
                flags: f,
                exptime: x,
                data,
                noreply: false,
                ..
            } => {
                assert_eq!((f, x, data), (flags, exptime, &b"x"[..]), "{line:?}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        check_split(b"incr n 18446744073709551615\r\n"),
        Request::Incr {
            key: b"n",
            delta: u64::MAX,
            noreply: false
        }
    );
    assert_eq!(
        check_split(b"decr n 1 noreply\r\n"),
        Request::Decr {
            key: b"n",
            delta: 1,
            noreply: true
        }
    );
    for (line, noreply) in [
        (&b"delete a\r\n"[..], false),
        (b"delete a 0\r\n", false),
        (b"delete a noreply\r\n", true),
        (b"delete a 0 noreply\r\n", true),
    ] {
        assert_eq!(check_split(line), Request::Delete { key: b"a", noreply });
    }
    assert_eq!(
        check_split(b"touch a 10\r\n"),
        Request::Touch {
            key: b"a",
            exptime: 10,
            noreply: false
        }
    );
    for (line, delay, noreply) in [
        (&b"flush_all\r\n"[..], 0, false),
        (b"flush_all 10\r\n", 10, false),
        (b"flush_all -1\r\n", -1, false),
        (b"flush_all noreply\r\n", 0, true),
        (b"flush_all 5 noreply\r\n", 5, true),
    ] {
        assert_eq!(check_split(line), Request::FlushAll { delay, noreply });
    }
    assert_eq!(check_split(b"version\r\n"), Request::Version);
    assert_eq!(check_split(b"quit\r\n"), Request::Quit);
    assert_eq!(check_split(b"stats\r\n"), Request::Stats { group: None });
    assert_eq!(
        check_split(b"stats slabs\r\n"),
        Request::Stats {
            group: Some(b"slabs")
        }
    );
    assert_eq!(
        check_split(b"verbosity 1\r\n"),
        Request::Verbosity { noreply: false }
    );
    assert_eq!(
        check_split(b"verbosity 1 noreply\r\n"),
        Request::Verbosity { noreply: true }
    );
    // A NUL ends the line for memcached (C string).
    assert_eq!(keys(&check_split(b"get a\x00 b\r\n")), vec![b"a".to_vec()]);
}

#[test]
fn text_errors_match_memcached() {
    let k251 = [&b"set "[..], &[b'k'; 251], b" 0 0 1\r\n"].concat();
    let g251 = [&b"get a "[..], &[b'k'; 251], b"\r\n"].concat();
    // (input, reply, consumed). Each checked against memcached 1.6.18.
    let cases: Vec<(&[u8], &[u8], usize)> = vec![
        (b"foo\r\n", ERROR, 5),
        (b"\r\n", ERROR, 2),
        (b"\n", ERROR, 1),
        (b"a\r\n", ERROR, 3),
        (b"get\r\n", ERROR, 5),
        (b"GET a\r\n", ERROR, 7),
        (b"gxt a\r\n", ERROR, 7),
        (b"set a 0 0\r\n", ERROR, 11),
        (b"set a 0 0 1 2 3\r\n", ERROR, 17),
        (b"cas a 0 0 1\r\n", ERROR, 13),
        (b"incr n\r\n", ERROR, 8),
        (b"verbosity\r\n", ERROR, 11),
        (b"mx\r\n", ERROR, 4),
        (b"set a 0 0 -1\r\n", BAD_FORMAT, 14),
        (b"set a -1 0 1\r\n", BAD_FORMAT, 14),
        (b"set a x 0 1\r\n", BAD_FORMAT, 13),
        (b"set a 0 x 1\r\n", BAD_FORMAT, 13),
        (b"cas a 0 0 1 x\r\n", BAD_FORMAT, 15),
        (&k251, BAD_FORMAT, k251.len()),
        (&g251, BAD_FORMAT, g251.len()),
        (b"set a 0 0 1\r\nxy\r\n", BAD_DATA_CHUNK, 16),
        (b"set a 0 0 1\r\nxyz\r\n", BAD_DATA_CHUNK, 16),
        (b"incr a x\r\n", BAD_DELTA, 10),
        (b"incr n -1\r\n", BAD_DELTA, 11),
        (b"incr n 18446744073709551616\r\n", BAD_DELTA, 29),
        (b"delete a 1\r\n", BAD_DELETE, 12),
        (b"touch a x\r\n", BAD_EXPTIME, 11),
        (b"flush_all x\r\n", BAD_EXPTIME, 13),
        (b"gat a\r\n", BAD_EXPTIME, 7),
        (b"gat x a\r\n", BAD_EXPTIME, 9),
        (b"verbosity x\r\n", BAD_FORMAT, 13),
        // noreply silences errors (the next line then gets its own reply).
        (b"set a 0 0 1 noreply\r\nxy\r\n", b"", 24),
        (b"set a x 0 1 noreply\r\n", b"", 21),
        (b"delete a 1 noreply\r\n", b"", 20),
        (b"incr a x noreply\r\n", b"", 18),
    ];
    for (input, reply, consume) in cases {
        assert_eq!(
            d(input),
            e(reply, consume),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn too_large_is_swallowed() {
    // Largest value for key "a": 1048516 bytes (flags 0), 1048512 (flags != 0).
    let limits = McLimits::default();
    let ok = decode(b"set a 0 0 1048516\r\n", &limits);
    assert_eq!(ok, McDecoded::Incomplete);
    assert_eq!(
        decode(b"set a 0 0 1048517\r\n", &limits),
        e(TOO_LARGE, 19 + 1048517 + 2)
    );
    assert_eq!(
        decode(b"set a 1 0 1048512\r\n", &limits),
        McDecoded::Incomplete
    );
    assert_eq!(
        decode(b"set a 1 0 1048513\r\n", &limits),
        e(TOO_LARGE, 19 + 1048513 + 2)
    );
    assert_eq!(
        decode(b"set a 0 0 2000000 noreply\r\n", &limits),
        e(b"", 27 + 2000002)
    );
    // A huge declared length is never allocated: just an error with a big swallow count.
    assert_eq!(
        decode(b"set a 0 0 2147483645\r\n", &limits),
        e(TOO_LARGE, 22 + 2147483647)
    );
    assert_eq!(
        decode(b"set a 0 0 2147483646\r\n", &limits),
        e(BAD_FORMAT, 22)
    );
}

#[test]
fn long_lines() {
    let limits = McLimits::default();
    assert_eq!(decode(&[b'x'; 2048], &limits), McDecoded::Incomplete);
    assert_eq!(
        decode(&[b'x'; 2049], &limits),
        McDecoded::Error {
            reply: b"",
            consume: 2049,
            close: true
        }
    );
    let mut get = b"get ".to_vec();
    get.resize(3000, b'x');
    assert_eq!(decode(&get, &limits), McDecoded::Incomplete);
    assert_eq!(
        decode(b"GET / HTTP/1.1\r\n", &limits),
        McDecoded::Error {
            reply: b"",
            consume: 16,
            close: true
        }
    );
}

fn meta(r: Request<'_>) -> MetaRequest<'_> {
    match r {
        Request::Meta(m) => m,
        other => panic!("{other:?}"),
    }
}

#[test]
fn meta_commands() {
    let m = meta(check_split(b"mg foo s v t f c k O123 q\r\n"));
    assert_eq!(m.cmd, MetaCmd::Get);
    assert_eq!(m.key, Cow::Borrowed(&b"foo"[..]));
    let flags: Vec<(u8, &[u8])> = m.flags.iter().collect();
    assert_eq!(flags[0], (b's', &b""[..]));
    assert_eq!(m.flags.get(b'O'), Some(&b"123"[..]));
    assert!(m.flags.has(b'q') && !m.flags.has(b'N'));
    let m = meta(check_split(b"mg YQ== b v\r\n"));
    assert_eq!((&m.key[..], m.key_was_b64), (&b"a"[..], true));
    let m = meta(check_split(b"ms foo 2 T30 F5 I\r\nhi\r\n"));
    assert_eq!((m.cmd, m.data), (MetaCmd::Set, Some(&b"hi"[..])));
    assert_eq!(m.flags.get(b'T'), Some(&b"30"[..]));
    let m = meta(check_split(b"ms YQ== 1 b\r\nx\r\n"));
    assert_eq!(&m.key[..], b"a");
    assert_eq!(meta(check_split(b"md a q\r\n")).cmd, MetaCmd::Delete);
    assert_eq!(
        meta(check_split(b"ma a D5 J1 N0 MI\r\n")).cmd,
        MetaCmd::Arithmetic
    );
    assert_eq!(meta(check_split(b"mn\r\n")).cmd, MetaCmd::Noop);
    assert_eq!(meta(check_split(b"mn x\r\n")).cmd, MetaCmd::Noop);
    assert_eq!(meta(check_split(b"me a\r\n")).cmd, MetaCmd::Debug);
    assert_eq!(meta(check_split(b"mg a v\x00 k\r\n")).flags.len_hint(), 1);
}

trait LenHint {
    fn len_hint(&self) -> usize;
}
impl LenHint for crate::memcache::MetaFlags<'_> {
    fn len_hint(&self) -> usize {
        self.iter().count()
    }
}

#[test]
fn meta_errors_match_memcached() {
    let k251 = [&b"mg "[..], &[b'k'; 251], b"\r\n"].concat();
    let many_mg = [
        &b"mg a"[..],
        &(0..19)
            .flat_map(|i| format!(" O{i}").into_bytes())
            .collect::<Vec<u8>>(),
        b"\r\n",
    ]
    .concat();
    let many_ms = [
        &b"ms a 1"[..],
        &(0..19)
            .flat_map(|i| format!(" O{i}").into_bytes())
            .collect::<Vec<u8>>(),
        b"\r\n",
    ]
    .concat();
    // (input, reply, consumed). Each checked against memcached 1.6.18.
    let cases: Vec<(&[u8], &[u8], usize)> = vec![
        (b"mg\r\n", ERROR, 4),
        (b"md\r\n", ERROR, 4),
        (b"ma\r\n", ERROR, 4),
        (b"ms\r\n", ERROR, 4),
        (b"me\r\n", BAD_FORMAT, 4),
        (b"me a b\r\n", BAD_FORMAT, 8),
        (b"mg a zz\r\n", META_INVALID_FLAG, 9),
        (b"mg a v v\r\n", META_DUP_FLAG, 10),
        (b"mg a T\r\n", META_BAD_TOKEN, 8),
        (b"mg a Tx\r\n", META_BAD_TOKEN, 9),
        (b"mg a N\r\n", META_BAD_TOKEN, 8),
        (b"mg a T Tx\r\n", META_DUP_FLAG, 11),
        (b"mg a T zz\r\n", META_INVALID_FLAG, 11),
        (b"mg YQ b v\r\n", META_BAD_KEY_B64, 11),
        (b"mg !!! b v\r\n", META_BAD_KEY_B64, 12),
        (&k251, BAD_FORMAT, k251.len()),
        (&many_mg, META_TOO_LONG, many_mg.len()),
        (&many_ms, MS_TOO_LONG, many_ms.len()),
        (b"ms a\r\n", BAD_FORMAT, 6),
        (b"ms a x\r\n", BAD_FORMAT, 8),
        (b"ms a -1\r\n", BAD_FORMAT, 9),
        // Flag errors on ms swallow the data block.
        (b"ms a 1 F\r\nx\r\n", BAD_FORMAT, 13),
        (b"ms a 1 Fx\r\nx\r\n", BAD_FORMAT, 14),
        (b"ms a 1 z\r\nx\r\n", META_INVALID_FLAG, 13),
        (b"ms a 1 MZZ\r\nx\r\n", META_BAD_MODE_LEN, 15),
        (b"ms a 1 MZZ T\r\nx\r\n", META_BAD_TOKEN, 17),
        (b"ms a 1 b\r\nx\r\n", META_BAD_KEY_B64, 13),
        (b"ms a 1\r\nxy\r\n", BAD_DATA_CHUNK, 11),
        (b"ma a Dx\r\n", MA_BAD_FLAG, 9),
        (b"ma a Jx\r\n", MA_BAD_FLAG, 9),
        (b"ma a q D1 Dx\r\n", MA_BAD_FLAG, 14),
    ];
    for (input, reply, consume) in cases {
        assert_eq!(
            d(input),
            e(reply, consume),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    assert_eq!(d(b"ms a 2000000\r\n"), e(TOO_LARGE, 14 + 2000002));
    assert_eq!(d(b"ms a 1048576 T0\r\n"), e(TOO_LARGE, 17 + 1048578));
}

#[test]
fn pipelined() {
    let input = b"get a\r\nset b 0 0 2\r\nhi\r\nmn\r\nms c 1 T0\r\nx\r\nbogus\r\ndelete b\r\n";
    let mut pos = 0;
    let mut kinds = Vec::new();
    while pos < input.len() {
        match d(&input[pos..]) {
            McDecoded::Request { req, consumed } => {
                kinds.push(
                    format!("{req:?}")
                        .split([' ', '(', '{'])
                        .next()
                        .unwrap()
                        .to_owned(),
                );
                pos += consumed;
            }
            McDecoded::Error { reply, consume, .. } => {
                kinds.push(String::from_utf8_lossy(reply).trim().to_owned());
                pos += consume;
            }
            McDecoded::Incomplete => panic!("incomplete at {pos}"),
        }
    }
    assert_eq!(kinds, ["Get", "Store", "Meta", "Meta", "ERROR", "Delete"]);
}

#[test]
fn numbers_like_c() {
    assert_eq!(safe_strtoull(b"18446744073709551615"), Some(u64::MAX));
    assert_eq!(safe_strtoull(b"18446744073709551616"), None);
    assert_eq!(safe_strtoull(b"-1"), None);
    assert_eq!(safe_strtoull(b"-0"), Some(0));
    assert_eq!(safe_strtoull(b""), None);
    assert_eq!(safe_strtoull(b"1x"), None);
    assert_eq!(safe_strtoull(b" 1"), Some(1));
    assert_eq!(safe_strtoul(b"4294967297"), Some(1));
    assert_eq!(safe_strtol(b"-5"), Some(-5));
    assert_eq!(safe_strtol(b"9223372036854775808"), None);
    assert_eq!(safe_strtol(b"-9223372036854775808"), Some(0));
}

proptest! {
    #[test]
    fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let limits = McLimits { max_line_len: 64, max_item_size: 200, ..McLimits::default() };
        let mut pos = 0;
        while pos < data.len() {
            match decode(&data[pos..], &limits) {
                McDecoded::Request { consumed, .. } => {
                    prop_assert!(consumed > 0 && pos + consumed <= data.len());
                    pos += consumed;
                }
                McDecoded::Error { consume, .. } => {
                    prop_assert!(consume > 0);
                    pos += consume;
                }
                McDecoded::Incomplete => break,
            }
        }
    }

    #[test]
    fn never_panics_structured(
        parts in proptest::collection::vec(
            prop_oneof![
                Just(&b"get "[..]), Just(&b"set "[..]), Just(&b"mg "[..]), Just(&b"ms "[..]),
                Just(&b"ma "[..]), Just(&b"\r\n"[..]), Just(&b" "[..]), Just(&b"1"[..]),
                Just(&b"-"[..]), Just(&b"noreply"[..]), Just(&b"b"[..]), Just(&b"T"[..]),
                Just(&b"YQ=="[..]), Just(&b"0 0 "[..]), Just(&b"\0"[..]), Just(&b"incr "[..]),
            ],
            0..30,
        )
    ) {
        let data = parts.concat();
        let _ = decode(&data, &McLimits::default());
    }

    #[test]
    fn store_round_trip(key in "[a-z]{1,20}", flags: u32, exptime in -100i64..100000, data in proptest::collection::vec(any::<u8>(), 0..100)) {
        let mut input = format!("set {key} {flags} {exptime} {}\r\n", data.len()).into_bytes();
        input.extend_from_slice(&data);
        input.extend_from_slice(b"\r\n");
        let req = check_split(&input);
        prop_assert_eq!(req, Request::Store {
            kind: StoreKind::Set, key: key.as_bytes(), flags, exptime, data: &data, cas_unique: 0, noreply: false,
        });
    }
}
