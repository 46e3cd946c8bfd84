use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::time::Instant;

use bytes::Bytes;
use sipcore::message::Message;
use sipcore::transport::{ConnectionId, TransportKind};

use super::*;
use crate::registrar::bindings::Flow;
use crate::registrar::RegistrarSettings;

const T0: UnixMillis = 1_700_000_000_000;

fn binding(contact: &str, expires_at: UnixMillis) -> Binding {
    Binding {
        contact: contact.into(),
        expires_at,
        q: 500,
        instance: Some("<urn:uuid:00000000-0000-1000-8000-000a95a0e128>".into()),
        reg_id: Some(1),
        call_id: "c1@192.0.2.10".into(),
        cseq: 7,
        path: vec!["<sip:edge.example.net;lr>".into()],
        flow: Flow {
            transport: TransportKind::Tcp,
            source: SocketAddr::from(([198, 51, 100, 7], 40000)),
            connection: None,
        },
        user_agent: Some("Desk 1.0".into()),
        registered_at: T0,
    }
}

fn sample() -> Bindings {
    let mut b = Bindings::new(RegistrarSettings::default());
    b.replace_aor(
        "alice@example.com",
        vec![
            binding("sip:alice@10.0.0.5", T0 + 60_000),
            binding("sip:alice@10.0.0.6", T0 + 3_600_000),
        ],
    );
    b.replace_aor(
        "bob@example.com",
        vec![binding("sip:bob@10.0.0.7", T0 + 600_000)],
    );
    b
}

fn listing(b: &Bindings) -> Vec<(String, Vec<Binding>)> {
    b.iter()
        .map(|(aor, list)| (aor.to_owned(), list.to_vec()))
        .collect()
}

#[test]
fn saved_bindings_load_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bindings.jsonl");
    let mut original = sample();
    // The connection is not saved: it does not outlive the process.
    let mut with_connection = binding("sip:carol@10.0.0.8", T0 + 60_000);
    with_connection.flow.connection = Some(ConnectionId(9));
    original.replace_aor("carol@example.com", vec![with_connection]);
    save(&original, &path).unwrap();

    let mut loaded = Bindings::new(RegistrarSettings::default());
    assert_eq!(load(&mut loaded, &path, T0).unwrap(), 4);
    original.replace_aor(
        "carol@example.com",
        vec![binding("sip:carol@10.0.0.8", T0 + 60_000)],
    );
    assert_eq!(listing(&loaded), listing(&original));
    assert_eq!(loaded.len(), 4);
    assert_eq!(loaded.next_expiry(), Some(T0 + 60_000));
    assert!(loaded.take_changed().is_empty());
    // One JSON object per line.
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert!(text.lines().all(|l| l.starts_with("{\"aor\":")), "{text}");
}

#[test]
fn expired_bindings_are_not_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bindings.jsonl");
    save(&sample(), &path).unwrap();
    let mut loaded = Bindings::new(RegistrarSettings::default());
    // alice@10.0.0.5 expired at T0 + 60 s, bob's has 9 minutes left.
    assert_eq!(load(&mut loaded, &path, T0 + 60_000).unwrap(), 2);
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded.lookup("alice@example.com", T0 + 60_000).len(), 1);
    assert_eq!(loaded.next_expiry(), Some(T0 + 600_000));
    // All of them expired: the AORs are not there at all.
    let mut loaded = Bindings::new(RegistrarSettings::default());
    assert_eq!(load(&mut loaded, &path, T0 + 3_600_000).unwrap(), 0);
    assert_eq!(loaded.aor_count(), 0);
    assert_eq!(loaded.next_expiry(), None);
}

#[test]
fn a_missing_file_loads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut loaded = Bindings::new(RegistrarSettings::default());
    assert_eq!(
        load(&mut loaded, &dir.path().join("none.jsonl"), T0).unwrap(),
        0
    );
    assert!(loaded.is_empty());
}

#[test]
fn a_corrupt_file_is_an_error_naming_it_and_loads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bindings.jsonl");
    save(&sample(), &path).unwrap();
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"aor\":\"x@example.com\",\"bindings\":[{\"contact\":\n");
    std::fs::write(&path, text).unwrap();
    let mut loaded = Bindings::new(RegistrarSettings::default());
    let err = load(&mut loaded, &path, T0).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("{}: line 3: ", path.display())),
        "{message}"
    );
    assert!(loaded.is_empty());

    std::fs::write(&path, b"\xff\xfe not utf-8\n").unwrap();
    let message = load(&mut loaded, &path, T0).unwrap_err().to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[test]
fn save_replaces_the_file_by_a_rename_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bindings.jsonl");
    std::fs::write(&path, "old\n").unwrap();
    let old_inode = std::fs::metadata(&path).unwrap().ino();
    // A reader holding the old file still reads it whole: it was replaced,
    // not rewritten in place.
    let reader = File::open(&path).unwrap();
    save(&sample(), &path).unwrap();
    assert_ne!(std::fs::metadata(&path).unwrap().ino(), old_inode);
    assert_eq!(io::read_to_string(reader).unwrap(), "old\n");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["bindings.jsonl"]);
}

#[test]
fn a_failed_save_names_the_file_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the file should be: the rename fails.
    let path = dir.path().join("bindings.jsonl");
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("keep"), "x").unwrap();
    let err = save(&sample(), &path).unwrap_err();
    assert!(
        err.to_string().starts_with(&path.display().to_string()),
        "{err}"
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["bindings.jsonl"]);
}

/// Resident memory of this process, from /proc/self/status (bytes).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// A desk phone's REGISTER as Yealinks send them (instance, reg-id, a
/// 36-byte Call-ID, a User-Agent).
fn desk_phone_register(i: u32) -> (String, Message) {
    let ip = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
    let text = format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP {ip}:5060;branch=z9hG4bK{i:08x}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{i}@example.com>;tag={i:08x}\r\n\
         To: <sip:{i}@example.com>\r\n\
         Call-ID: {i:08x}-5a1e-4c2b-9f3d-0123456789ab\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:{i}@{ip}:5060;transport=udp>;+sip.instance=\"<urn:uuid:{i:08x}-0000-1000-8000-000a95a0e128>\";reg-id=1\r\n\
         Expires: 3600\r\n\
         User-Agent: Yealink SIP-T46S 66.86.0.15\r\n\
         Content-Length: 0\r\n\r\n"
    );
    (
        format!("{i}@example.com"),
        Message::parse(Bytes::from(text)).unwrap(),
    )
}

/// Figures for BENCHMARKS.md: bytes per binding at 100,000 bindings, and
/// the time to encode every record, save the snapshot and load it.
/// `cargo test --release -p proxy --bin tandem registrar::snapshot::tests::figures_at_100k -- --ignored --nocapture --test-threads=1`
#[test]
#[ignore = "measurement: prints figures, asserts only the 1 KiB target"]
fn figures_at_100k() {
    const N: u32 = 100_000;
    let settings = RegistrarSettings {
        max_bindings: N as usize,
        ..RegistrarSettings::default()
    };
    let before = rss();
    let mut b = Bindings::new(settings.clone());
    for i in 0..N {
        let (aor, msg) = desk_phone_register(i);
        let flow = Flow {
            transport: TransportKind::Udp,
            source: SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 5060)),
            connection: None,
        };
        b.register(&msg, &aor, flow, T0).unwrap();
    }
    b.take_changed();
    let after = rss();
    assert_eq!(b.len(), N as usize);
    let per_binding = (after - before) / u64::from(N);
    println!(
        "bindings: {N}, RSS delta {} bytes, {per_binding} bytes per binding",
        after - before
    );

    let aors: Vec<String> = b.iter().map(|(aor, _)| aor.to_owned()).collect();
    let start = Instant::now();
    let mut bytes = 0;
    for aor in &aors {
        bytes += b.record(aor).unwrap().len();
    }
    let encode = start.elapsed();
    println!(
        "encode all records: {:.1} ms ({bytes} bytes, {} bytes per record)",
        encode.as_secs_f64() * 1000.0,
        bytes / aors.len()
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bindings.jsonl");
    let start = Instant::now();
    save(&b, &path).unwrap();
    let saved = start.elapsed();
    let size = std::fs::metadata(&path).unwrap().len();
    println!(
        "save snapshot: {:.1} ms ({size} bytes)",
        saved.as_secs_f64() * 1000.0
    );

    let mut loaded = Bindings::new(settings);
    let start = Instant::now();
    let n = load(&mut loaded, &path, T0).unwrap();
    let load_time = start.elapsed();
    assert_eq!(n, N as usize);
    println!("load snapshot: {:.1} ms", load_time.as_secs_f64() * 1000.0);
    assert!(per_binding <= 1024, "{per_binding} bytes per binding");
}
