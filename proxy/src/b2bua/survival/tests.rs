#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;

fn sdp(port: u16, formats: &str, extra: &str) -> String {
    format!(
        "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.9\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {formats}\r\n{extra}"
    )
}

#[test]
fn hold_is_any_direction_but_sendrecv_on_either_side() {
    let talk = sdp(4000, "8", "a=sendrecv\r\n");
    let plain = sdp(4000, "8", "");
    for (local, remote, held) in [
        (&talk, &plain, false),
        (&sdp(4000, "8", "a=sendonly\r\n"), &plain, true),
        (&talk, &sdp(4000, "8", "a=recvonly\r\n"), true),
        (&talk, &sdp(4000, "8", "a=inactive\r\n"), true),
    ] {
        assert_eq!(
            on_hold(Some(local.as_bytes()), Some(remote.as_bytes())),
            held,
            "{local} / {remote}"
        );
    }
    assert!(!on_hold(None, None));
}

#[test]
fn codec_change_compares_names_not_payload_numbers() {
    let pcma = sdp(4000, "8", "a=rtpmap:8 PCMA/8000\r\n");
    let pcma_bare = sdp(5000, "8 101", "a=rtpmap:101 telephone-event/8000\r\n");
    let pcmu = sdp(4000, "0", "");
    let opus = sdp(4000, "111", "a=rtpmap:111 opus/48000/2\r\n");
    assert!(!codec_changed(
        Some(pcma.as_bytes()),
        Some(pcma_bare.as_bytes())
    ));
    assert!(codec_changed(Some(pcma.as_bytes()), Some(pcmu.as_bytes())));
    assert!(codec_changed(Some(pcmu.as_bytes()), Some(opus.as_bytes())));
    assert!(!codec_changed(None, Some(pcmu.as_bytes())));
}

#[test]
fn the_new_servers_rtp_address_comes_from_its_answer() {
    let ok = |body: &str| {
        let text = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n\
             From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        Message::parse(bytes::Bytes::from(text)).unwrap()
    };
    assert_eq!(
        answer_rtp_addr(&ok(&sdp(16000, "8", ""))),
        Some("127.0.0.9:16000".parse().unwrap())
    );
    assert_eq!(
        answer_rtp_addr(&ok(&sdp(0, "8", ""))),
        None,
        "rejected stream"
    );
    let held = sdp(16000, "8", "").replace("c=IN IP4 127.0.0.9", "c=IN IP4 0.0.0.0");
    assert_eq!(answer_rtp_addr(&ok(&held)), None, "no address to switch to");
}
