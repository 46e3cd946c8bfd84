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

/// SRTP with SDES keys (RFC 4568) crosses the B2BUA: the profile and every
/// `a=crypto` line reach the other leg unchanged both ways; only the
/// addresses become the relay's (the relay forwards SRTP untouched, so
/// the end points' keys stay theirs).
#[test]
fn srtp_sdes_offer_and_answer_keep_their_profile_and_crypto_lines() {
    let info = SessionInfo {
        id: media_relay::SessionId(1),
        side_a: media_relay::LocalPorts {
            ip: "127.0.0.1".parse().unwrap(),
            rtp_port: 30000,
            rtcp_port: 30001,
        },
        side_b: media_relay::LocalPorts {
            ip: "127.0.0.1".parse().unwrap(),
            rtp_port: 30002,
            rtcp_port: 30003,
        },
    };
    let crypto_a = [
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32",
        "a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^20|1:32",
    ];
    let offer = format!(
        "v=0\r\no=trunk 1 1 IN IP4 127.0.0.9\r\ns=-\r\nc=IN IP4 127.0.0.9\r\nt=0 0\r\n\
m=audio 40000 RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
{}\r\n{}\r\na=sendrecv\r\n",
        crypto_a[0], crypto_a[1]
    );
    let crypto_b =
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj|2^20|1:32";
    let answer = format!(
        "v=0\r\no=ms 7 7 IN IP4 127.0.0.50\r\ns=-\r\nc=IN IP4 127.0.0.50\r\nt=0 0\r\n\
m=audio 16000 RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n{crypto_b}\r\n"
    );

    let relayed = rewrite_sdp(&info, Side::A, offer.as_bytes()).unwrap();
    let to_b = std::str::from_utf8(&relayed.body).unwrap();
    assert_eq!(relayed.remote, Some("127.0.0.9:40000".parse().unwrap()));
    assert!(!relayed.rtcp_mux);
    assert!(to_b.contains("m=audio 30002 RTP/SAVP 0 101\r\n"), "{to_b}");
    for line in crypto_a {
        assert!(to_b.contains(&format!("{line}\r\n")), "{to_b}");
    }
    assert!(!to_b.contains("127.0.0.9"), "{to_b}");

    let relayed = rewrite_sdp(&info, Side::B, answer.as_bytes()).unwrap();
    let to_a = std::str::from_utf8(&relayed.body).unwrap();
    assert_eq!(relayed.remote, Some("127.0.0.50:16000".parse().unwrap()));
    assert!(to_a.contains("m=audio 30000 RTP/SAVP 0\r\n"), "{to_a}");
    assert!(to_a.contains(&format!("{crypto_b}\r\n")), "{to_a}");
    assert!(!to_a.contains("127.0.0.50"), "{to_a}");
}

/// A call keeps the SDP it relayed to leg B for its whole life (to offer
/// a new media server the same on a resume): no room to grow is kept
/// with it (issue 15, memory per held call).
#[test]
fn a_relayed_sdp_is_kept_without_spare_room() {
    let local = |rtp_port| media_relay::LocalPorts {
        ip: "127.0.0.1".parse().unwrap(),
        rtp_port,
        rtcp_port: rtp_port + 1,
    };
    let info = SessionInfo {
        id: media_relay::SessionId(1),
        side_a: local(30000),
        side_b: local(30002),
    };
    let relayed = rewrite_sdp(&info, Side::A, OFFER.as_bytes()).unwrap();
    let len = relayed.body.len();
    let kept = relayed.body.try_into_mut().expect("the only handle");
    assert_eq!(kept.capacity(), len);
}
