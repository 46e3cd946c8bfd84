use std::time::{Duration, Instant};

use super::*;

#[tokio::test]
async fn an_unchanged_or_later_deadline_does_not_register_the_timer_again() {
    let mut timer = EngineTimer::new();
    let soon = Instant::now() + Duration::from_millis(30);
    // The engine loop sets the machine's next deadline on every pass.
    for _ in 0..100 {
        timer.set(Some(soon));
    }
    assert_eq!(timer.registrations(), 1);
    timer.set(Some(soon + Duration::from_millis(5)));
    assert_eq!(timer.registrations(), 1, "moved later: no registration");
    timer.set(Some(soon));
    assert_eq!(timer.registrations(), 2, "moved earlier: registered again");
    assert!(timer.is_armed());
    tokio::time::timeout(Duration::from_secs(5), timer.fired())
        .await
        .expect("the deadline fires within 5 s");
    assert!(!timer.is_armed());
    // After it fired, the same instant arms it again (the machine may
    // still have work due then).
    timer.set(Some(soon));
    assert!(timer.is_armed());
    assert_eq!(timer.registrations(), 3);
    tokio::time::timeout(Duration::from_secs(5), timer.fired())
        .await
        .expect("a past deadline fires at once");
    timer.set(None);
    assert!(!timer.is_armed());
}
