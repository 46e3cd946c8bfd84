use super::*;

#[tokio::test]
async fn command_output_and_exit_code() {
    let out = run("echo hello; exit 3", Duration::from_secs(10)).await;
    assert_eq!(out.exit_code, Some(3));
    assert_eq!(out.output, "hello\n");
    assert!(!out.timed_out);
}

#[tokio::test]
async fn command_is_killed_at_the_limit() {
    let started = std::time::Instant::now();
    let out = run("sleep 30", Duration::from_millis(300)).await;
    assert!(out.timed_out);
    assert!(started.elapsed() < Duration::from_secs(10));
}
