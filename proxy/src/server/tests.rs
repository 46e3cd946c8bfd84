#[tokio::test]
async fn a_panicking_engine_is_an_error_that_names_the_panic() {
    let task = tokio::spawn(async {
        let calls: Vec<u64> = Vec::new();
        if calls.is_empty() {
            panic!("call 7 vanished");
        }
    });
    let failure = match task.await {
        Err(e) => e,
        Ok(()) => panic!("the task did not fail"),
    };
    let e = super::engine_failure(failure);
    assert_eq!(e.to_string(), "call engine failed: call 7 vanished");
}
