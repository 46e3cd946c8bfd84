use super::*;

#[test]
fn offer_parses_back_to_its_address() {
    let media: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let body = sdp(media, 7, 1, true);
    let text = std::str::from_utf8(&body).unwrap();
    assert!(text.contains("m=audio 40000 RTP/AVP 8\r\n"), "{text}");
    assert!(text.contains("a=rtpmap:8 PCMA/8000\r\n"), "{text}");
    assert!(text.contains("a=sendrecv\r\n"), "{text}");
    assert_eq!(remote_media(&body), Some(media));

    let v6: SocketAddr = "[::1]:5004".parse().unwrap();
    assert_eq!(remote_media(&sdp(v6, 1, 1, true)), Some(v6));
}

#[test]
fn remote_media_needs_a_usable_audio_stream() {
    assert_eq!(remote_media(b""), None);
    assert_eq!(remote_media(b"not sdp"), None);
    let hold = b"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8\r\n";
    assert_eq!(remote_media(hold), None, "legacy hold");
    let rejected = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 0 RTP/AVP 8\r\n";
    assert_eq!(remote_media(rejected), None, "rejected stream");
    let video_first = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=video 5000 RTP/AVP 96\r\nm=audio 4000 RTP/AVP 8\r\nc=IN IP4 10.0.0.2\r\n";
    assert_eq!(
        remote_media(video_first),
        Some("10.0.0.2:4000".parse().unwrap()),
        "first audio stream, media-level c="
    );
}

#[test]
fn in_dialog_targets() {
    let fallback: SocketAddr = "127.0.0.1:5060".parse().unwrap();
    let t = uri_target("sip:ms@127.0.0.2:5070", TransportKind::Udp, fallback);
    assert_eq!(t.addr, "127.0.0.2:5070".parse().unwrap());
    let t = uri_target("sip:127.0.0.3;lr", TransportKind::Udp, fallback);
    assert_eq!(t.addr, "127.0.0.3:5060".parse().unwrap(), "default port");
    let t = uri_target("sip:x@[::1]:5080", TransportKind::Tcp, fallback);
    assert_eq!(t.addr, "[::1]:5080".parse().unwrap());
    assert_eq!(t.transport, TransportKind::Tcp);
    let t = uri_target("sip:x@media.example", TransportKind::Udp, fallback);
    assert_eq!(t.addr, fallback, "names are not resolved");
}

#[test]
fn via_and_contact() {
    let local: SocketAddr = "127.0.0.1:5062".parse().unwrap();
    assert_eq!(
        via(TransportKind::Udp, local, "z9hG4bKx"),
        "SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKx;rport"
    );
    assert_eq!(
        contact_uri(TransportKind::Tcp, local),
        "sip:tandem-load@127.0.0.1:5062;transport=tcp"
    );
    assert_eq!(uri_host("::1".parse().unwrap()), "[::1]");
    assert_eq!(token().len(), 16);
}
