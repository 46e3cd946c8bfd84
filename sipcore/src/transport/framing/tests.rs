use super::*;

const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n\
Call-ID: a84b4c76e66710\r\n\
CSeq: 314159 INVITE\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

const OPTIONS: &[u8] = b"OPTIONS sip:carol@example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK1\r\n\
l: 0\r\n\
\r\n";

/// Feed `chunks` one after the other, collecting every frame.
fn feed<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Result<(Vec<Frame>, BytesMut)> {
    let mut framer = Framer::new();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(frame) = framer.decode(&mut buf)? {
            frames.push(frame);
        }
    }
    Ok((frames, buf))
}

fn one(data: &[u8]) -> Result<(Vec<Frame>, BytesMut)> {
    feed([data])
}

fn msg(data: &[u8]) -> Frame {
    Frame::Message(Bytes::copy_from_slice(data))
}

#[test]
fn whole_message_in_one_read() {
    let (frames, rest) = one(INVITE).unwrap();
    assert_eq!(frames, vec![msg(INVITE)]);
    assert!(rest.is_empty());
}

#[test]
fn split_byte_by_byte() {
    let mut framer = Framer::new();
    let mut buf = BytesMut::new();
    for (i, b) in INVITE.iter().enumerate() {
        buf.extend_from_slice(&[*b]);
        let frame = framer.decode(&mut buf).unwrap();
        if i + 1 < INVITE.len() {
            assert_eq!(frame, None, "complete too early at byte {i}");
        } else {
            assert_eq!(frame, Some(msg(INVITE)));
        }
    }
    assert!(buf.is_empty());
}

#[test]
fn every_split_point_of_two_messages() {
    let stream = [INVITE, b"\r\n\r\n", OPTIONS].concat();
    for cut in 0..=stream.len() {
        let (frames, rest) = feed([&stream[..cut], &stream[cut..]]).unwrap();
        assert_eq!(
            frames,
            vec![msg(INVITE), Frame::Ping, msg(OPTIONS)],
            "cut at {cut}"
        );
        assert!(rest.is_empty());
    }
}

#[test]
fn two_messages_in_one_read() {
    let (frames, rest) = one(&[INVITE, OPTIONS].concat()).unwrap();
    assert_eq!(frames, vec![msg(INVITE), msg(OPTIONS)]);
    assert!(rest.is_empty());
}

#[test]
fn message_is_split_off_without_copy() {
    let mut buf = BytesMut::from(&[INVITE, OPTIONS].concat()[..]);
    let start = buf.as_ptr();
    let Some(Frame::Message(m)) = Framer::new().decode(&mut buf).unwrap() else {
        panic!("no message");
    };
    assert_eq!(m.as_ptr(), start);
}

#[test]
fn pings_between_messages() {
    let stream = [
        &b"\r\n\r\n"[..],
        INVITE,
        b"\r\n\r\n\r\n\r\n",
        OPTIONS,
        b"\r\n\r\n",
    ]
    .concat();
    let (frames, rest) = one(&stream).unwrap();
    assert_eq!(
        frames,
        vec![
            Frame::Ping,
            msg(INVITE),
            Frame::Ping,
            Frame::Ping,
            msg(OPTIONS),
            Frame::Ping
        ]
    );
    assert!(rest.is_empty());
}

#[test]
fn ping_split_across_reads() {
    let (frames, _) = feed([&b"\r"[..], b"\n", b"\r", b"\n"]).unwrap();
    assert_eq!(frames, vec![Frame::Ping]);
}

#[test]
fn single_crlf_pong_is_skipped() {
    // A lone CRLF (a pong, or a separator) waits: it may still be a ping.
    let (frames, rest) = one(b"\r\n").unwrap();
    assert!(frames.is_empty());
    assert_eq!(&rest[..], b"\r\n");
    // The next message pushes it out.
    let (frames, rest) = feed([&b"\r\n"[..], OPTIONS]).unwrap();
    assert_eq!(frames, vec![msg(OPTIONS)]);
    assert!(rest.is_empty());
}

#[test]
fn missing_content_length_is_an_error() {
    let data = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\r\n";
    let err = one(data).unwrap_err();
    match err {
        Error::Parse(e) => {
            assert_eq!(e.header, Some("Content-Length"));
            assert!(e.reason.contains("mandatory"), "{e}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn bad_content_length_is_an_error() {
    for value in ["", "abc", "-1", "1 2", "0x10", "+5"] {
        let data = format!("OPTIONS sip:a@b SIP/2.0\r\nContent-Length: {value}\r\n\r\n");
        assert!(
            matches!(one(data.as_bytes()), Err(Error::Parse(_))),
            "value {value:?}"
        );
    }
}

#[test]
fn conflicting_content_lengths_are_an_error() {
    let data = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\nl: 3\r\n\r\nabc";
    assert!(matches!(one(data), Err(Error::Parse(_))));
    // Equal repeats are fine.
    let data = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 3\r\nl: 003\r\n\r\nabc";
    assert_eq!(one(data).unwrap().0, vec![msg(data)]);
}

#[test]
fn compact_form_case_and_whitespace() {
    for header in [
        "l: 3",
        "L:3",
        "content-length :3",
        "CONTENT-LENGTH\t:\t3 ",
        "Content-Length:   3",
    ] {
        let data = format!("MESSAGE sip:a@b SIP/2.0\r\n{header}\r\n\r\nabcOPTIONS");
        let (frames, rest) = one(data.as_bytes()).unwrap();
        let expected = &data.as_bytes()[..data.len() - "OPTIONS".len()];
        assert_eq!(frames, vec![msg(expected)], "header {header:?}");
        assert_eq!(&rest[..], b"OPTIONS");
    }
}

#[test]
fn similar_header_names_are_not_content_length() {
    let data =
        b"OPTIONS sip:a@b SIP/2.0\r\nLength: 5\r\nContent-Language: 7\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(one(data).unwrap().0, vec![msg(data)]);
}

#[test]
fn leading_zeros() {
    let data = b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 0005\r\n\r\nhello";
    assert_eq!(one(data).unwrap().0, vec![msg(data)]);
}

#[test]
fn body_containing_crlfcrlf() {
    let body = b"line1\r\n\r\nline2\r\n\r\n";
    let data = [
        format!("MESSAGE sip:a@b SIP/2.0\r\nl: {}\r\n\r\n", body.len()).as_bytes(),
        body,
    ]
    .concat();
    let stream = [&data[..], OPTIONS].concat();
    let (frames, rest) = feed(stream.chunks(3)).unwrap();
    assert_eq!(frames, vec![msg(&data), msg(OPTIONS)]);
    assert!(rest.is_empty());
}

#[test]
fn bare_lf_line_endings() {
    let data = b"OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/TCP h\nContent-Length: 2\n\nhi";
    let (frames, _) = feed(data.chunks(1)).unwrap();
    assert_eq!(frames, vec![msg(data)]);
}

#[test]
fn folded_line_is_not_a_header() {
    let data = b"OPTIONS sip:a@b SIP/2.0\r\nSubject: x\r\n l: 9\r\nl: 0\r\n\r\n";
    assert_eq!(one(data).unwrap().0, vec![msg(data)]);
}

#[test]
fn oversize_body_is_an_error() {
    let data = format!(
        "MESSAGE sip:a@b SIP/2.0\r\nContent-Length: {}\r\n\r\n",
        MAX_MESSAGE_SIZE
    );
    match one(data.as_bytes()) {
        Err(Error::TooLarge { size, limit }) => {
            assert_eq!(limit, MAX_MESSAGE_SIZE);
            assert_eq!(size, data.len() + MAX_MESSAGE_SIZE);
        }
        other => panic!("unexpected {other:?}"),
    }
    // A huge number is "too large", not an overflow.
    let data = b"MESSAGE sip:a@b SIP/2.0\r\nl: 99999999999999999999999999\r\n\r\n";
    assert!(matches!(one(data), Err(Error::TooLarge { .. })));
}

#[test]
fn exactly_max_size_is_accepted() {
    // Five digits of length keep the header block's size fixed.
    let template = b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 00000\r\n\r\n";
    let body_len = MAX_MESSAGE_SIZE - template.len();
    let head = format!("MESSAGE sip:a@b SIP/2.0\r\nContent-Length: {body_len:05}\r\n\r\n");
    assert_eq!(head.len() + body_len, MAX_MESSAGE_SIZE);
    let data = [head.as_bytes(), &vec![b'x'; body_len]].concat();
    assert_eq!(one(&data).unwrap().0, vec![msg(&data)]);
}

#[test]
fn oversize_header_block_is_an_error() {
    let mut data = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
    while data.len() <= MAX_MESSAGE_SIZE {
        data.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\r\n");
    }
    // Fed in chunks with no end of headers in sight: an error as soon as the
    // limit is passed, not an ever-growing buffer.
    let err = feed(data.chunks(1000)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                limit: MAX_MESSAGE_SIZE,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn garbage_is_rejected_at_once() {
    for data in [
        &b"\x16\x03\x01\x02\x00"[..],
        b"\x00\x01\x00\x00\x21\x12\xa4\x42",
        b" INVITE",
    ] {
        assert!(matches!(one(data), Err(Error::Parse(_))), "{data:?}");
    }
}

#[test]
fn incomplete_body_waits() {
    let data = b"MESSAGE sip:a@b SIP/2.0\r\nl: 10\r\n\r\nabc";
    let (frames, rest) = one(data).unwrap();
    assert!(frames.is_empty());
    assert_eq!(&rest[..], &data[..]);
}

#[test]
fn crlf_only_datagrams() {
    assert!(is_crlf_only(b"\r\n\r\n"));
    assert!(is_crlf_only(b"\r\n"));
    assert!(!is_crlf_only(b""));
    assert!(!is_crlf_only(b"\r\nX"));
}
