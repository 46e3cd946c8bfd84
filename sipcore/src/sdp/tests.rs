use super::*;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Write SDP in tests with `\n` and turn it into CRLF, the usual wire form.
fn crlf(s: &str) -> Vec<u8> {
    s.replace('\n', "\r\n").into_bytes()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap()
}

const RELAY: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5));

/// Offer as Asterisk 18 (chan_pjsip) sends it.
const ASTERISK: &str = "v=0
o=- 1680000000 1680000001 IN IP4 192.168.1.10
s=Asterisk
c=IN IP4 192.168.1.10
t=0 0
m=audio 14562 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=maxptime:150
a=sendrecv
";

/// Offer of a carrier SBC on IPv6, with bandwidth, key and info lines.
const SBC_V6: &str = "v=0
o=SBC-1 2890844526 2890844527 IN IP6 2001:db8::1
s=-
i=carrier session
c=IN IP6 2001:db8::10
b=AS:80
t=0 0
m=audio 30000 RTP/AVP 18 101
i=voice
b=AS:64
k=prompt
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=rtcp:30001 IN IP6 2001:db8::10
";

/// T.38 switch re-INVITE: audio disabled, image stream offered.
const T38: &str = "v=0
o=gw 4711 4713 IN IP4 10.0.0.5
s=-
c=IN IP4 10.0.0.5
t=0 0
m=audio 0 RTP/AVP 0
m=image 4000 udptl t38
a=T38FaxVersion:0
a=T38MaxBitRate:14400
a=T38FaxRateManagement:transferredTCF
a=T38FaxMaxBuffer:200
a=T38FaxMaxDatagram:200
a=T38FaxUdpEC:t38UDPRedundancy
a=X-vendor:\x01 odd  spacing
";

/// Audio and video, media-level c= only, rtcp-mux and a=rtcp without
/// address.
const AV: &str = "v=0
o=alice 2890844526 2890844526 IN IP4 alice.example.com
s=-
t=0 0
m=audio 49170 RTP/AVP 96 0
c=IN IP4 198.51.100.7
a=rtpmap:96 opus/48000/2
a=rtcp-mux
a=rtcp:49170
m=video 51372 RTP/AVP 97
c=IN IP4 198.51.100.7
a=rtpmap:97 H264/90000
a=fmtp:97 profile-level-id=42e01f
a=rtcp:51373
";

#[test]
fn asterisk_view() {
    let body = crlf(ASTERISK);
    let sdp = Sdp::parse(&body).unwrap();
    assert_eq!(sdp.line_ending(), LineEnding::CrLf);
    let o = sdp.origin();
    assert_eq!(o.username, "-");
    assert_eq!(o.sess_id, "1680000000");
    assert_eq!(o.sess_version, "1680000001");
    assert_eq!(o.sess_version_u64(), Some(1_680_000_001));
    assert_eq!(o.nettype, "IN");
    assert_eq!(o.addrtype, AddrType::Ip4);
    assert_eq!(o.address, "192.168.1.10");
    assert_eq!(sdp.connection(), Some(ip("192.168.1.10")));
    assert_eq!(sdp.direction(), None);
    assert_eq!(sdp.media().len(), 1);
    let m = &sdp.media()[0];
    assert_eq!(m.index(), 0);
    assert_eq!(m.kind(), MediaKind::Audio);
    assert_eq!(m.port(), 14562);
    assert_eq!(m.port_count(), None);
    assert_eq!(m.proto(), "RTP/AVP");
    assert_eq!(m.formats().collect::<Vec<_>>(), ["0", "8", "101"]);
    assert_eq!(m.connection(), Some(ip("192.168.1.10")));
    assert_eq!(m.own_connection(), None);
    assert_eq!(m.rtcp(), None);
    assert!(!m.rtcp_mux());
    assert_eq!(m.direction(), Direction::SendRecv);
    assert_eq!(m.own_direction(), Some(Direction::SendRecv));
    assert_eq!(m.ptime(), Some(20));
    assert!(!m.is_on_hold());
    assert!(!m.is_rejected());
    let maps: Vec<_> = m.rtpmaps().collect();
    assert_eq!(maps.len(), 3);
    assert_eq!(
        maps[2],
        RtpMap {
            payload_type: 101,
            encoding: "telephone-event",
            clock_rate: 8000,
            channels: None
        }
    );
    assert_eq!(
        m.codec(),
        Some(Codec {
            format: "0",
            rtpmap: Some(RtpMap {
                payload_type: 0,
                encoding: "PCMU",
                clock_rate: 8000,
                channels: None
            }),
            ptime: Some(20),
        })
    );
    let attrs: Vec<_> = m.attributes().map(|(n, _)| text(n)).collect();
    assert_eq!(
        attrs,
        ["rtpmap", "rtpmap", "rtpmap", "fmtp", "ptime", "maxptime", "sendrecv"]
    );
    assert!(m.as_bytes().starts_with(b"m=audio 14562"));
    assert!(m.as_bytes().ends_with(b"a=sendrecv\r\n"));
}

#[test]
fn asterisk_anchor() {
    let body = crlf(ASTERISK);
    let sdp = Sdp::parse(&body).unwrap();
    let streams = [StreamChange {
        port: Some(40000),
        ..Default::default()
    }];
    let out = sdp.rewrite(&Rewrite {
        connection: Some(RELAY),
        origin_address: Some(RELAY),
        streams: &streams,
        ..Default::default()
    });
    let want = crlf(
        "v=0
o=- 1680000000 1680000002 IN IP4 203.0.113.5
s=Asterisk
c=IN IP4 203.0.113.5
t=0 0
m=audio 40000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=maxptime:150
a=sendrecv
",
    );
    assert_eq!(text(&out), text(&want));
    // The output is itself valid and says what we meant.
    let again = Sdp::parse(&out).unwrap();
    assert_eq!(again.media()[0].connection(), Some(RELAY));
    assert_eq!(again.media()[0].port(), 40000);
}

#[test]
fn sbc_ipv6_view() {
    let body = crlf(SBC_V6);
    let sdp = Sdp::parse(&body).unwrap();
    assert_eq!(sdp.origin().addrtype, AddrType::Ip6);
    assert_eq!(sdp.origin().address, "2001:db8::1");
    assert_eq!(sdp.connection(), Some(ip("2001:db8::10")));
    let m = &sdp.media()[0];
    assert_eq!(
        m.rtcp(),
        Some(Rtcp {
            port: 30001,
            address: Some(ip("2001:db8::10"))
        })
    );
    let codec = m.codec().unwrap();
    assert_eq!(codec.format, "18");
    assert_eq!(codec.rtpmap.unwrap().encoding, "G729");
    assert_eq!(codec.ptime, Some(20));
}

#[test]
fn sbc_ipv6_to_ipv4_relay() {
    let body = crlf(SBC_V6);
    let sdp = Sdp::parse(&body).unwrap();
    let streams = [StreamChange {
        port: Some(40000),
        ..Default::default()
    }];
    let out = sdp.rewrite(&Rewrite {
        connection: Some(RELAY),
        origin_address: Some(RELAY),
        streams: &streams,
        ..Default::default()
    });
    // Address types switch to IP4; a=rtcp follows the port (+1) and the
    // address; i=, b=, k= and the rest are untouched.
    let want = crlf(
        "v=0
o=SBC-1 2890844526 2890844528 IN IP4 203.0.113.5
s=-
i=carrier session
c=IN IP4 203.0.113.5
b=AS:80
t=0 0
m=audio 40000 RTP/AVP 18 101
i=voice
b=AS:64
k=prompt
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=rtcp:40001 IN IP4 203.0.113.5
",
    );
    assert_eq!(text(&out), text(&want));
}

#[test]
fn ipv4_to_ipv6_with_explicit_rtcp_port() {
    let body = crlf(
        ASTERISK
            .replace("a=sendrecv\n", "a=rtcp:14563 IN IP4 192.168.1.10\n")
            .as_str(),
    );
    let sdp = Sdp::parse(&body).unwrap();
    let relay6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x99));
    let streams = [StreamChange {
        port: Some(40000),
        rtcp_port: Some(40005),
        ..Default::default()
    }];
    let out = sdp.rewrite(&Rewrite {
        connection: Some(relay6),
        streams: &streams,
        ..Default::default()
    });
    let want = crlf(
        "v=0
o=- 1680000000 1680000002 IN IP4 192.168.1.10
s=Asterisk
c=IN IP6 2001:db8::99
t=0 0
m=audio 40000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=maxptime:150
a=rtcp:40005 IN IP6 2001:db8::99
",
    );
    assert_eq!(text(&out), text(&want));
}

#[test]
fn t38_reinvite_survives_byte_for_byte() {
    let body = crlf(T38);
    let sdp = Sdp::parse(&body).unwrap();
    let [audio, image] = sdp.media() else {
        panic!("two streams expected")
    };
    assert!(audio.is_rejected());
    assert_eq!(image.kind(), MediaKind::Image);
    assert_eq!(image.proto(), "udptl");
    assert_eq!(image.formats().collect::<Vec<_>>(), ["t38"]);
    assert_eq!(
        image.codec(),
        Some(Codec {
            format: "t38",
            rtpmap: None,
            ptime: None
        })
    );
    let t38: Vec<_> = image
        .attributes()
        .filter(|(n, _)| n.starts_with(b"T38"))
        .map(|(n, v)| (text(n), text(v.unwrap())))
        .collect();
    assert_eq!(t38[0], ("T38FaxVersion", "0"));
    assert_eq!(t38[1], ("T38MaxBitRate", "14400"));

    // Anchor the image stream; the disabled audio stream stays at port 0.
    let streams = [
        StreamChange::default(),
        StreamChange {
            port: Some(50000),
            ..Default::default()
        },
    ];
    let out = sdp.rewrite(&Rewrite {
        connection: Some(RELAY),
        streams: &streams,
        ..Default::default()
    });
    let want = crlf(
        "v=0
o=gw 4711 4714 IN IP4 10.0.0.5
s=-
c=IN IP4 203.0.113.5
t=0 0
m=audio 0 RTP/AVP 0
m=image 50000 udptl t38
a=T38FaxVersion:0
a=T38MaxBitRate:14400
a=T38FaxRateManagement:transferredTCF
a=T38FaxMaxBuffer:200
a=T38FaxMaxDatagram:200
a=T38FaxUdpEC:t38UDPRedundancy
a=X-vendor:\x01 odd  spacing
",
    );
    assert_eq!(out, want);
}

#[test]
fn rejected_stream_port_only_changes_when_asked() {
    let body = crlf(T38);
    let sdp = Sdp::parse(&body).unwrap();
    let streams = [StreamChange {
        port: Some(41000),
        ..Default::default()
    }];
    let out = sdp.rewrite(&Rewrite {
        streams: &streams,
        version: VersionChange::Keep,
        ..Default::default()
    });
    assert_eq!(
        out,
        crlf(T38)
            .as_slice()
            .replace_first(b"m=audio 0 ", b"m=audio 41000 ")
    );
}

#[test]
fn audio_video_media_level_connections_and_rtcp_mux() {
    let body = crlf(AV);
    let sdp = Sdp::parse(&body).unwrap();
    assert_eq!(sdp.connection(), None);
    let [audio, video] = sdp.media() else {
        panic!("two streams expected")
    };
    assert!(audio.rtcp_mux());
    assert_eq!(
        audio.rtcp(),
        Some(Rtcp {
            port: 49170,
            address: None
        })
    );
    assert_eq!(
        audio.rtpmap(96),
        Some(RtpMap {
            payload_type: 96,
            encoding: "opus",
            clock_rate: 48000,
            channels: Some(2)
        })
    );
    assert_eq!(audio.rtpmap(0).unwrap().encoding, "PCMU");
    assert_eq!(audio.rtpmap(99), None);
    assert!(!video.rtcp_mux());
    assert_eq!(video.kind(), MediaKind::Video);
    assert_eq!(video.connection(), Some(ip("198.51.100.7")));
    assert_eq!(video.own_connection(), Some(ip("198.51.100.7")));

    let streams = [
        StreamChange {
            port: Some(40000),
            ..Default::default()
        },
        StreamChange {
            port: Some(40010),
            ..Default::default()
        },
    ];
    let out = sdp.rewrite(&Rewrite {
        connection: Some(RELAY),
        streams: &streams,
        ..Default::default()
    });
    // No session c= is added; both media c= are rewritten; the muxed
    // a=rtcp follows the RTP port, the other one goes to port + 1.
    let want = crlf(
        "v=0
o=alice 2890844526 2890844527 IN IP4 alice.example.com
s=-
t=0 0
m=audio 40000 RTP/AVP 96 0
c=IN IP4 203.0.113.5
a=rtpmap:96 opus/48000/2
a=rtcp-mux
a=rtcp:40000
m=video 40010 RTP/AVP 97
c=IN IP4 203.0.113.5
a=rtpmap:97 H264/90000
a=fmtp:97 profile-level-id=42e01f
a=rtcp:40011
",
    );
    assert_eq!(text(&out), text(&want));
}

#[test]
fn per_stream_address_inserts_media_connection() {
    let body = crlf(
        "v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=audio 4000 RTP/AVP 0
i=main audio
a=sendrecv
m=video 4002 RTP/AVP 31
",
    );
    let sdp = Sdp::parse(&body).unwrap();
    let other = ip("198.51.100.99");
    let streams = [
        StreamChange::default(),
        StreamChange {
            address: Some(other),
            ..Default::default()
        },
    ];
    let out = sdp.rewrite(&Rewrite {
        connection: Some(RELAY),
        streams: &streams,
        ..Default::default()
    });
    let want = crlf(
        "v=0
o=- 1 2 IN IP4 192.0.2.1
s=-
c=IN IP4 203.0.113.5
t=0 0
m=audio 4000 RTP/AVP 0
i=main audio
a=sendrecv
m=video 4002 RTP/AVP 31
c=IN IP4 198.51.100.99
",
    );
    assert_eq!(text(&out), text(&want));

    // Same with the stream address on the first stream: the c= goes after
    // its i= line.
    let streams = [StreamChange {
        address: Some(other),
        ..Default::default()
    }];
    let out = sdp.rewrite(&Rewrite {
        streams: &streams,
        version: VersionChange::Keep,
        ..Default::default()
    });
    let want = crlf(
        "v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=audio 4000 RTP/AVP 0
i=main audio
c=IN IP4 198.51.100.99
a=sendrecv
m=video 4002 RTP/AVP 31
",
    );
    assert_eq!(text(&out), text(&want));
}

#[test]
fn no_connection_anywhere_gets_one_per_stream() {
    // Invalid strictly speaking, but the relay address must go somewhere;
    // also: last line without a line ending.
    let body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0";
    let sdp = Sdp::parse(body).unwrap();
    assert_eq!(sdp.media()[0].connection(), None);
    let out = sdp.rewrite(&Rewrite {
        connection: Some(RELAY),
        version: VersionChange::Keep,
        ..Default::default()
    });
    assert_eq!(
        text(&out),
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 203.0.113.5"
    );
    Sdp::parse(&out).unwrap();
}

#[test]
fn port_count_is_kept() {
    let body = crlf(
        "v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
c=IN IP4 224.2.1.1/127/3
t=0 0
m=audio 49170/2 RTP/AVP 0
",
    );
    let sdp = Sdp::parse(&body).unwrap();
    assert_eq!(sdp.connection(), Some(ip("224.2.1.1")));
    assert_eq!(sdp.media()[0].port(), 49170);
    assert_eq!(sdp.media()[0].port_count(), Some(2));
    let streams = [StreamChange {
        port: Some(50000),
        ..Default::default()
    }];
    let out = sdp.rewrite(&Rewrite {
        connection: Some(RELAY),
        streams: &streams,
        ..Default::default()
    });
    let want = crlf(
        "v=0
o=- 1 2 IN IP4 192.0.2.1
s=-
c=IN IP4 203.0.113.5
t=0 0
m=audio 50000/2 RTP/AVP 0
",
    );
    assert_eq!(text(&out), text(&want));
}

#[test]
fn hold_sendonly_inactive_and_zero_address() {
    let sendonly = crlf(&ASTERISK.replace("a=sendrecv", "a=sendonly"));
    let sdp = Sdp::parse(&sendonly).unwrap();
    assert_eq!(sdp.media()[0].direction(), Direction::SendOnly);
    assert!(sdp.media()[0].is_on_hold());

    // Session-level inactive, overridden by media level on the second
    // stream.
    let body = crlf(
        "v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
a=inactive
m=audio 4000 RTP/AVP 0
m=audio 4002 RTP/AVP 8
a=recvonly
",
    );
    let sdp = Sdp::parse(&body).unwrap();
    assert_eq!(sdp.direction(), Some(Direction::Inactive));
    assert_eq!(sdp.media()[0].direction(), Direction::Inactive);
    assert_eq!(sdp.media()[0].own_direction(), None);
    assert!(sdp.media()[0].is_on_hold());
    assert_eq!(sdp.media()[1].direction(), Direction::RecvOnly);
    assert!(!sdp.media()[1].is_on_hold());

    // Legacy hold: c=0.0.0.0 survives anchoring, so the hold does too.
    let body = crlf(&ASTERISK.replace("c=IN IP4 192.168.1.10", "c=IN IP4 0.0.0.0"));
    let sdp = Sdp::parse(&body).unwrap();
    let m = &sdp.media()[0];
    assert_eq!(m.direction(), Direction::SendRecv);
    assert!(m.is_on_hold());
    let streams = [StreamChange {
        port: Some(40000),
        ..Default::default()
    }];
    let out = sdp.rewrite(&Rewrite {
        connection: Some(RELAY),
        streams: &streams,
        version: VersionChange::Keep,
        ..Default::default()
    });
    assert_eq!(
        out,
        body.as_slice()
            .replace_first(b"m=audio 14562", b"m=audio 40000")
    );
    // An explicit stream address still wins: a media-level c= is added.
    let streams = [StreamChange {
        address: Some(RELAY),
        ..Default::default()
    }];
    let out = sdp.rewrite(&Rewrite {
        streams: &streams,
        version: VersionChange::Keep,
        ..Default::default()
    });
    assert_eq!(
        out,
        body.as_slice()
            .replace_first(b"a=rtpmap:0 ", b"c=IN IP4 203.0.113.5\r\na=rtpmap:0 ")
    );
}

#[test]
fn direction_helpers() {
    assert_eq!(Direction::SendOnly.reversed(), Direction::RecvOnly);
    assert_eq!(Direction::Inactive.reversed(), Direction::Inactive);
    assert!(Direction::Inactive.is_hold());
    assert!(!Direction::RecvOnly.is_hold());
    assert_eq!(
        Direction::from_attribute(b"sendonly"),
        Some(Direction::SendOnly)
    );
    assert_eq!(Direction::from_attribute(b"sendonlyx"), None);
}

#[test]
fn set_direction_replaces_existing() {
    let body = crlf(ASTERISK);
    let sdp = Sdp::parse(&body).unwrap();
    let out = sdp.set_direction(0, Direction::SendOnly);
    let want = crlf(
        &ASTERISK
            .replace("a=sendrecv", "a=sendonly")
            .replace("1680000001", "1680000002"),
    );
    assert_eq!(text(&out), text(&want));
    assert!(Sdp::parse(&out).unwrap().media()[0].is_on_hold());
}

#[test]
fn set_direction_inserts_and_dedups() {
    let body = crlf(
        "v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=audio 4000 RTP/AVP 0
a=ptime:20
m=audio 4002 RTP/AVP 8
a=sendonly
a=x-foo
a=inactive
",
    );
    let sdp = Sdp::parse(&body).unwrap();
    let streams = [
        StreamChange {
            direction: Some(Direction::Inactive),
            ..Default::default()
        },
        StreamChange {
            direction: Some(Direction::SendRecv),
            ..Default::default()
        },
    ];
    let out = sdp.rewrite(&Rewrite {
        streams: &streams,
        ..Default::default()
    });
    let want = crlf(
        "v=0
o=- 1 2 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=audio 4000 RTP/AVP 0
a=ptime:20
a=inactive
m=audio 4002 RTP/AVP 8
a=sendrecv
a=x-foo
",
    );
    assert_eq!(text(&out), text(&want));
    // Out of range: only the version moves.
    let out = sdp.set_direction(7, Direction::Inactive);
    assert_eq!(out, body.as_slice().replace_first(b"o=- 1 1", b"o=- 1 2"));
}

#[test]
fn set_direction_without_final_line_ending() {
    let body =
        b"v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 4000 RTP/AVP 0";
    let sdp = Sdp::parse(body).unwrap();
    assert_eq!(sdp.line_ending(), LineEnding::Lf);
    let out = sdp.set_direction(0, Direction::SendOnly);
    assert_eq!(
        text(&out),
        "v=0\no=- 1 2 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 4000 RTP/AVP 0\na=sendonly"
    );
}

#[test]
fn bare_lf_is_preserved() {
    let body = ASTERISK.as_bytes();
    let sdp = Sdp::parse(body).unwrap();
    assert_eq!(sdp.line_ending(), LineEnding::Lf);
    assert_eq!(sdp.media()[0].ptime(), Some(20));
    let streams = [StreamChange {
        port: Some(40000),
        address: Some(ip("198.51.100.1")),
        direction: Some(Direction::RecvOnly),
        ..Default::default()
    }];
    let out = sdp.rewrite(&Rewrite {
        connection: Some(RELAY),
        streams: &streams,
        ..Default::default()
    });
    let want = "v=0
o=- 1680000000 1680000002 IN IP4 192.168.1.10
s=Asterisk
c=IN IP4 203.0.113.5
t=0 0
m=audio 40000 RTP/AVP 0 8 101
c=IN IP4 198.51.100.1
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=maxptime:150
a=recvonly
";
    assert_eq!(text(&out), want);
}

#[test]
fn mixed_line_endings_each_line_keeps_its_own() {
    let body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\ns=-\r\nc=IN IP4 192.0.2.1\nt=0 0\r\nm=audio 4000 RTP/AVP 0\n";
    let sdp = Sdp::parse(body).unwrap();
    assert_eq!(sdp.line_ending(), LineEnding::CrLf);
    let out = sdp.rewrite(&Rewrite {
        connection: Some(RELAY),
        ..Default::default()
    });
    assert_eq!(
        text(&out),
        "v=0\r\no=- 1 2 IN IP4 192.0.2.1\ns=-\r\nc=IN IP4 203.0.113.5\nt=0 0\r\nm=audio 4000 RTP/AVP 0\n"
    );
}

fn with_version(v: &str) -> Vec<u8> {
    crlf(&format!(
        "v=0\no=- 7 {v} IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 4000 RTP/AVP 0\n"
    ))
}

#[test]
fn version_bump() {
    for (before, after) in [
        ("0", "1"),
        ("99", "100"),
        ("1680000001", "1680000002"),
        ("18446744073709551614", "18446744073709551615"),
        // Past u64::MAX the version still increases, as decimal text.
        ("18446744073709551615", "18446744073709551616"),
        ("999999999999999999999999", "1000000000000000000000000"),
        ("0009", "0010"),
    ] {
        let body = with_version(before);
        let sdp = Sdp::parse(&body).unwrap();
        let out = sdp.rewrite(&Rewrite::default());
        assert_eq!(out, with_version(after), "{before}");
    }
    let body = with_version("18446744073709551615");
    let sdp = Sdp::parse(&body).unwrap();
    assert_eq!(sdp.origin().sess_version_u64(), Some(u64::MAX));
    let body = with_version("18446744073709551616");
    let sdp = Sdp::parse(&body).unwrap();
    assert_eq!(sdp.origin().sess_version_u64(), None);

    let body = with_version("5");
    let sdp = Sdp::parse(&body).unwrap();
    let out = sdp.rewrite(&Rewrite {
        version: VersionChange::Set(u64::MAX),
        ..Default::default()
    });
    assert_eq!(out, with_version("18446744073709551615"));
}

#[test]
fn passthrough_when_nothing_changes() {
    for body in [
        crlf(ASTERISK),
        crlf(SBC_V6),
        crlf(T38),
        crlf(AV),
        ASTERISK.as_bytes().to_vec(),
    ] {
        let sdp = Sdp::parse(&body).unwrap();
        let keep = Rewrite {
            version: VersionChange::Keep,
            ..Default::default()
        };
        assert_eq!(sdp.rewrite(&keep), body);
        // Default: only the version moves; deterministic, so rewriting the
        // same offer twice gives the same bytes.
        let bumped = sdp.rewrite(&Rewrite::default());
        assert_eq!(bumped, sdp.rewrite(&Rewrite::default()));
        let v = sdp.origin().sess_version;
        let next = (sdp.origin().sess_version_u64().unwrap() + 1).to_string();
        let o_line = |ver: &str| {
            let o = sdp.origin();
            format!(
                "o={} {} {ver} {} {} {}",
                o.username,
                o.sess_id,
                o.nettype,
                o.addrtype.as_str(),
                o.address
            )
        };
        assert_eq!(
            bumped,
            body.as_slice()
                .replace_first(o_line(v).as_bytes(), o_line(&next).as_bytes())
        );
        // Changing things to what they already are changes nothing.
        let m = &sdp.media()[0];
        let streams = [StreamChange {
            port: Some(m.port()),
            address: m.connection(),
            direction: None,
            rtcp_port: m.rtcp().map(|r| r.port),
        }];
        let same = Rewrite {
            connection: sdp.connection(),
            version: VersionChange::Keep,
            streams: &streams,
            ..Default::default()
        };
        assert_eq!(sdp.rewrite(&same), body);
    }
}

#[test]
fn rewrite_into_appends() {
    let body = crlf(ASTERISK);
    let sdp = Sdp::parse(&body).unwrap();
    let mut out = b"prefix".to_vec();
    sdp.rewrite_into(
        &Rewrite {
            version: VersionChange::Keep,
            ..Default::default()
        },
        &mut out,
    );
    assert_eq!(&out[..6], b"prefix");
    assert_eq!(&out[6..], body.as_slice());
}

#[test]
fn lenient_where_harmless() {
    // Blank lines, trailing blanks, non-UTF-8 session name, fractional
    // ptime, m= without formats, unknown media type.
    let body = b"\r\nv=0\r\no=- 1 1 IN IP4 host.example.com \r\ns=Caf\xe9\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\r\nm=audio 4000 RTP/AVP 0 \r\na=ptime:20.5\r\nm=video 0 RTP/AVP\r\nm=x-foo 5 bar\r\n\r\n";
    let sdp = Sdp::parse(body).unwrap();
    assert_eq!(sdp.origin().address, "host.example.com");
    assert_eq!(sdp.media()[0].ptime(), Some(20));
    assert_eq!(sdp.media()[0].formats().collect::<Vec<_>>(), ["0"]);
    assert_eq!(sdp.media()[1].codec(), None);
    assert_eq!(sdp.media()[2].kind(), MediaKind::Other("x-foo"));
    assert_eq!(sdp.media()[2].kind().as_str(), "x-foo");
    // Inserted lines go before the trailing blank line.
    let streams = [
        StreamChange::default(),
        StreamChange::default(),
        StreamChange {
            direction: Some(Direction::Inactive),
            ..Default::default()
        },
    ];
    let out = sdp.rewrite(&Rewrite {
        streams: &streams,
        version: VersionChange::Keep,
        ..Default::default()
    });
    assert!(out.ends_with(b"m=x-foo 5 bar\r\na=inactive\r\n\r\n"));
}

#[test]
fn errors_are_clear() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "SDP does not start with v="),
        (b"\r\n\r\n", "SDP does not start with v="),
        (b"o=- 1 1 IN IP4 1.2.3.4\r\n", "SDP does not start with v="),
        (b"v=1\r\n", "SDP v= is not 0"),
        (b"v=0\r\ns=-\r\n", "SDP has no o= line"),
        (b"v=0\r\nxyz\r\n", "SDP line is not of the form x=value"),
        (
            b"v=0\r\no=- 1 1 IN IP4\r\n",
            "SDP o= line does not have 6 fields",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 a b\r\n",
            "SDP o= line does not have 6 fields",
        ),
        (
            b"v=0\r\no=- 1 x1 IN IP4 a\r\n",
            "SDP o= sess-version is not a number",
        ),
        (
            b"v=0\r\no=- 1 +1 IN IP4 a\r\n",
            "SDP o= sess-version is not a number",
        ),
        (
            b"v=0\r\no=- 1 1 IN IPX a\r\n",
            "SDP o= address type is not IP4 or IP6",
        ),
        (
            b"v=0\r\no=\xff 1 1 IN IP4 a\r\n",
            "SDP o= line is not UTF-8",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 a\r\no=- 1 1 IN IP4 a\r\n",
            "SDP has more than one o= line",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 a\r\nm=audio 1 RTP/AVP 0\r\no=- 1 1 IN IP4 a\r\n",
            "SDP o= line is inside a media description",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 a\r\nm=\r\n",
            "SDP m= line has no media type",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 a\r\nm=audio\r\n",
            "SDP m= line has no port",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 a\r\nm=audio x RTP/AVP 0\r\n",
            "SDP m= port is not a number",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 a\r\nm=audio 70000 RTP/AVP 0\r\n",
            "SDP m= port is not a number",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 a\r\nm=audio 1/x RTP/AVP 0\r\n",
            "SDP m= port count is not a number",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 a\r\nm=audio 1\r\n",
            "SDP m= line has no transport protocol",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 a\r\nm=audio 1 RTP/AVP \xe9\r\n",
            "SDP m= line is not UTF-8",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 a\r\nc=IN IP4\r\n",
            "SDP c= line does not have 3 fields",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 a\r\nc=XX IP4 1.2.3.4\r\n",
            "SDP c= network type is not IN",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 a\r\nc=IN IPX 1.2.3.4\r\n",
            "SDP c= address type is not IP4 or IP6",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 a\r\nc=IN IP4 host.example.com\r\n",
            "SDP c= address is not an IP address",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 a\r\nc=IN IP6 1.2.3.4\r\n",
            "SDP c= address does not match its address type",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 a\r\nm=audio 1 RTP/AVP 0\r\na=rtcp:\r\n",
            "SDP a=rtcp has no port",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 a\r\nm=audio 1 RTP/AVP 0\r\na=rtcp:x\r\n",
            "SDP a=rtcp port is not a number",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 a\r\nm=audio 1 RTP/AVP 0\r\na=rtcp:5 IN IP4\r\n",
            "SDP a=rtcp address does not have 3 fields",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 a\r\nm=audio 1 RTP/AVP 0\r\na=rtcp:5 IN IP4 ::1\r\n",
            "SDP a=rtcp address does not match its address type",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 a\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:x PCMU/8000\r\n",
            "SDP a=rtpmap payload type is not a number below 128",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 a\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:0\r\n",
            "SDP a=rtpmap has no encoding",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 a\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n",
            "SDP a=rtpmap clock rate is not a number",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 a\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:0 /8000\r\n",
            "SDP a=rtpmap has no encoding name",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 a\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000/x\r\n",
            "SDP a=rtpmap channel count is not a number",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 a\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:0 \xe9/8000\r\n",
            "SDP a=rtpmap is not UTF-8",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 a\r\nm=audio 1 RTP/AVP 0\r\na=ptime:abc\r\n",
            "SDP a=ptime is not a number",
        ),
    ];
    for (body, reason) in cases {
        let err = Sdp::parse(body).expect_err(&String::from_utf8_lossy(body));
        assert_eq!(err.reason, *reason, "{}", String::from_utf8_lossy(body));
    }
}

/// `replace` of the first occurrence, for building expected bytes.
trait ReplaceFirst {
    fn replace_first(&self, from: &[u8], to: &[u8]) -> Vec<u8>;
}

impl ReplaceFirst for [u8] {
    fn replace_first(&self, from: &[u8], to: &[u8]) -> Vec<u8> {
        let i = self
            .windows(from.len())
            .position(|w| w == from)
            .expect("pattern present");
        [&self[..i], to, &self[i + from.len()..]].concat()
    }
}

impl ReplaceFirst for Vec<u8> {
    fn replace_first(&self, from: &[u8], to: &[u8]) -> Vec<u8> {
        self.as_slice().replace_first(from, to)
    }
}

fn valid_samples() -> Vec<Vec<u8>> {
    vec![
        crlf(ASTERISK),
        crlf(SBC_V6),
        crlf(T38),
        crlf(AV),
        AV.as_bytes().to_vec(),
    ]
}

fn arb_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
        Just(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
    ]
}

fn arb_direction() -> impl Strategy<Value = Direction> {
    prop_oneof![
        Just(Direction::SendRecv),
        Just(Direction::SendOnly),
        Just(Direction::RecvOnly),
        Just(Direction::Inactive),
    ]
}

fn arb_change() -> impl Strategy<Value = StreamChange> {
    (
        proptest::option::of(arb_ip()),
        proptest::option::of(any::<u16>()),
        proptest::option::of(any::<u16>()),
        proptest::option::of(arb_direction()),
    )
        .prop_map(|(address, port, rtcp_port, direction)| StreamChange {
            address,
            port,
            rtcp_port,
            direction,
        })
}

#[derive(Debug, Clone)]
enum Mutation {
    Insert(usize, u8),
    Delete(usize),
    Replace(usize, u8),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    let byte = prop_oneof![
        Just(b'\r'),
        Just(b'\n'),
        Just(b' '),
        Just(b'/'),
        Just(b':'),
        Just(b'='),
        Just(b'0'),
        Just(b'9'),
        Just(b'm'),
        Just(b'c'),
        Just(0xffu8),
        any::<u8>(),
    ];
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        (any::<usize>(), byte).prop_map(|(i, b)| Mutation::Replace(i, b)),
    ]
}

fn apply(mut body: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let n = body.len();
        match *m {
            Mutation::Insert(i, b) => body.insert(i % (n + 1), b),
            Mutation::Delete(i) if n > 0 => {
                body.remove(i % n);
            }
            Mutation::Replace(i, b) if n > 0 => body[i % n] = b,
            _ => {}
        }
    }
    body
}

/// Whatever parses must rewrite without panicking, give valid SDP again,
/// and pass through unchanged when nothing is asked.
fn check(body: &[u8], rw: &Rewrite<'_>) {
    let Ok(sdp) = Sdp::parse(body) else { return };
    for m in sdp.media() {
        let _ = (m.codec(), m.rtpmaps().count(), m.attributes().count());
        let _ = m.is_on_hold();
    }
    let keep = Rewrite {
        version: VersionChange::Keep,
        ..Default::default()
    };
    assert_eq!(sdp.rewrite(&keep), body);
    let out = sdp.rewrite(rw);
    let again = Sdp::parse(&out).expect("rewritten SDP parses");
    assert_eq!(again.media().len(), sdp.media().len());
    for (i, m) in again.media().iter().enumerate() {
        if let Some(p) = rw.streams.get(i).and_then(|s| s.port) {
            assert_eq!(m.port(), p);
        }
        if let Some(d) = rw.streams.get(i).and_then(|s| s.direction) {
            assert_eq!(m.own_direction(), Some(d));
        }
        if let Some(a) = rw.streams.get(i).and_then(|s| s.address) {
            assert_eq!(m.connection(), Some(a));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        check(&body, &Rewrite::default());
        let mut prefixed = b"v=0\r\no=- 1 1 IN IP4 a\r\n".to_vec();
        prefixed.extend_from_slice(&body);
        check(&prefixed, &Rewrite { connection: Some(RELAY), ..Default::default() });
    }

    #[test]
    fn mutated_sdp_never_panics(
        sample in 0usize..5,
        muts in proptest::collection::vec(arb_mutation(), 0..8),
        connection in proptest::option::of(arb_ip()),
        origin_address in proptest::option::of(arb_ip()),
        streams in proptest::collection::vec(arb_change(), 0..4),
    ) {
        let body = apply(valid_samples()[sample].clone(), &muts);
        let rw = Rewrite { connection, origin_address, streams: &streams, ..Default::default() };
        check(&body, &rw);
    }
}
