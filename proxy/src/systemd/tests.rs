use super::*;

#[test]
fn a_ping_needs_engine_ticks_since_the_last_one() {
    let mut last = None;
    assert!(engine_progressed(&mut last, 0));
    assert!(!engine_progressed(&mut last, 0), "a stuck engine: no ping");
    assert!(!engine_progressed(&mut last, 0));
    assert!(engine_progressed(&mut last, 1));
    assert!(engine_progressed(&mut last, 7));
    assert!(!engine_progressed(&mut last, 7));
}

#[test]
fn status_names_the_role_and_the_calls() {
    assert_eq!(status_line("active", 12), "active, 12 calls");
}
