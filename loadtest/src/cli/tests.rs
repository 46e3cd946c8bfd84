use super::*;

fn call_args(args: &[&str]) -> std::result::Result<CallArgs, clap::Error> {
    let mut argv = vec!["tandem-load", "call"];
    argv.extend_from_slice(args);
    match Cli::try_parse_from(argv)?.command {
        Command::Call(a) => Ok(a),
        Command::Answer(_) => unreachable!(),
    }
}

#[test]
fn durations() {
    assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert!(parse_duration("soon").is_err());
    assert!(parse_duration("5d").is_err());
    assert!(parse_duration("").is_err());
}

#[test]
fn addresses() {
    assert_eq!(
        parse_addr("--target", "127.0.0.1", 5060).unwrap(),
        "127.0.0.1:5060".parse().unwrap()
    );
    assert_eq!(
        parse_addr("--target", "127.0.0.1:5070", 5060).unwrap(),
        "127.0.0.1:5070".parse().unwrap()
    );
    assert_eq!(
        parse_addr("--target", "[::1]:5070", 5060).unwrap(),
        "[::1]:5070".parse().unwrap()
    );
    assert_eq!(
        parse_addr("--target", "localhost:5080", 5060).unwrap(),
        "127.0.0.1:5080".parse().unwrap()
    );
    let err = parse_addr("--target", "notanaddress", 5060).unwrap_err();
    assert!(err.to_string().contains("--target"), "{err}");
    assert!(err.to_string().contains("notanaddress"), "{err}");
    assert!(parse_addr("--target", "127.0.0.1:99999", 5060).is_err());
}

#[test]
fn call_defaults_and_checks() {
    let cfg = call_args(&["-t", "127.0.0.1:5070", "-n", "5"])
        .unwrap()
        .check()
        .unwrap();
    assert_eq!(cfg.rate, Some(10.0));
    assert_eq!(cfg.local.ip(), "127.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(cfg.media_ip, cfg.local.ip());
    assert_eq!(cfg.hold, Duration::from_secs(10));
    assert_eq!(cfg.drain, Duration::from_secs(25));
    assert!(cfg.rtp);

    let cfg = call_args(&["-t", "127.0.0.1", "-c", "100", "-d", "1m"])
        .unwrap()
        .check()
        .unwrap();
    assert_eq!(cfg.rate, None, "concurrency alone: keep 100 up");
    assert_eq!(cfg.target.port(), 5060);

    let err = call_args(&["-t", "127.0.0.1"])
        .unwrap()
        .check()
        .unwrap_err();
    assert!(err.to_string().contains("--calls"), "{err}");
    let err = call_args(&["-t", "127.0.0.1", "-n", "1", "-r", "0"])
        .unwrap()
        .check()
        .unwrap_err();
    assert!(err.to_string().contains("--rate"), "{err}");
    let err = call_args(&["-t", "127.0.0.1", "-n", "1", "-H", "bad header"])
        .unwrap()
        .check()
        .unwrap_err();
    assert!(err.to_string().contains("--header"), "{err}");
    assert!(call_args(&["-t", "127.0.0.1", "-n", "1", "--fail-cmd", "true"]).is_err());

    let cfg = call_args(&["-t", "127.0.0.1", "-n", "1", "-H", "X-Test: a b"])
        .unwrap()
        .check()
        .unwrap();
    assert_eq!(cfg.headers, vec![("X-Test".to_owned(), "a b".to_owned())]);
}

#[test]
fn answer_needs_a_media_address() {
    let parse = |args: &[&str]| {
        let mut argv = vec!["tandem-load", "answer"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Answer(a) => a.check(),
            Command::Call(_) => unreachable!(),
        }
    };
    let cfg = parse(&["-l", "127.0.0.1:5070"]).unwrap();
    assert_eq!(cfg.media_ip, "127.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(cfg.rtp, RtpMode::Echo);
    let err = parse(&["-l", "0.0.0.0:5070"]).unwrap_err();
    assert!(err.to_string().contains("--media-ip"), "{err}");
    assert!(parse(&["-l", "0.0.0.0:5070", "--media-ip", "127.0.0.1"]).is_ok());
}
