use super::*;

#[test]
fn netstrings_are_read_in_order_and_a_bad_frame_ends_the_stream() {
    let input = b"14:{\"event\":true},17:{\"response\":true},x2:{},".to_vec();
    let (tx, rx) = mpsc::channel();
    read_netstrings(Box::new(std::io::Cursor::new(input)), tx);
    let got: Vec<Value> = rx.try_iter().collect();
    assert_eq!(
        got,
        vec![
            serde_json::json!({"event": true}),
            serde_json::json!({"response": true})
        ]
    );
}

#[test]
fn an_oversized_length_is_not_allocated() {
    let input = b"99999999999:{}".to_vec();
    let (tx, rx) = mpsc::channel();
    read_netstrings(Box::new(std::io::Cursor::new(input)), tx);
    assert_eq!(rx.try_iter().count(), 0);
}

#[test]
fn wav_peak_reads_samples_after_the_header() {
    let mut wav = vec![0xffu8; 44];
    wav.extend_from_slice(&1000i16.to_le_bytes());
    wav.extend_from_slice(&(-3000i16).to_le_bytes());
    assert_eq!(wav_peak(&wav), 3000);
    assert_eq!(wav_peak(&wav[..44]), 0);
    assert_eq!(wav_peak(&[]), 0);
}

#[test]
fn account_line_names_credentials_proxy_and_transport() {
    let mut config = PhoneConfig::new(
        "alice",
        "s3cret",
        "example.test",
        "127.0.0.1:5060".parse().unwrap(),
    );
    config.transport = Transport::Tcp;
    config.auto_answer = true;
    assert_eq!(
        account_line(&config),
        "<sip:alice@example.test;transport=tcp>;auth_pass=s3cret;\
         outbound=\"sip:127.0.0.1:5060;transport=tcp\";regint=600;\
         answermode=auto;audio_codecs=PCMU,PCMA\n"
    );
}
