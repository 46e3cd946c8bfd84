use super::*;

const OFFER: &str =
    "v=0\r\no=tandem 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 20002 RTP/AVP 0 8 18 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:18 G729/8000\r\na=fmtp:18 annexb=no\r\na=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n";

#[test]
fn narrow_offer_keeps_the_answered_codec_and_dtmf() {
    let answer = "v=0\r\no=ms 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 16000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
    let narrowed = narrow_offer(OFFER.as_bytes(), answer.as_bytes()).unwrap();
    let expected = "v=0\r\no=tandem 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 20002 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n";
    assert_eq!(std::str::from_utf8(&narrowed).unwrap(), expected);
}

#[test]
fn narrow_offer_maps_renumbered_dynamic_types() {
    let answer = "v=0\r\no=ms 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 16000 RTP/AVP 0 96\r\na=rtpmap:96 telephone-event/8000\r\n";
    let narrowed = narrow_offer(OFFER.as_bytes(), answer.as_bytes()).unwrap();
    let text = std::str::from_utf8(&narrowed).unwrap();
    assert!(text.contains("m=audio 20002 RTP/AVP 0 101\r\n"), "{text}");
    assert!(!text.contains("G729"), "{text}");
}

#[test]
fn is_sdp_reads_the_media_type_only() {
    assert!(is_sdp(Some("application/sdp")));
    assert!(is_sdp(Some("Application/SDP; charset=utf-8")));
    assert!(!is_sdp(Some("multipart/mixed;boundary=x")));
    assert!(!is_sdp(None));
}
