use super::*;

#[test]
fn a_ping_needs_an_engine_heartbeat_within_the_ping_period_or_three_ticks() {
    let ms = Duration::from_millis;
    // A ping period shorter than the engine's tick: the tick's slack.
    assert!(engine_alive(ms(1400), ms(200)));
    assert!(!engine_alive(ms(1600), ms(200)), "a stuck engine: no ping");
    // A long ping period: the period itself.
    assert!(engine_alive(ms(9_000), ms(10_000)));
    assert!(!engine_alive(ms(10_001), ms(10_000)));
}

#[test]
fn status_names_the_role_and_the_calls() {
    assert_eq!(status_line("active", 12), "active, 12 calls");
}
