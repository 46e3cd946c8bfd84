use super::*;

#[test]
fn accept_errors_back_off_doubling_up_to_a_cap_and_reset_on_success() {
    let mut b = Backoff::default();
    assert_eq!(b.succeeded(), None);
    let delays: Vec<Duration> = (0..12).map(|_| b.failed()).collect();
    assert_eq!(delays[0], Backoff::FIRST);
    assert_eq!(delays[1], Backoff::FIRST * 2);
    assert!(delays.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(*delays.last().unwrap(), Backoff::MAX);
    // Far more failures than the shift would allow do not overflow.
    for _ in 0..100 {
        assert_eq!(b.failed(), Backoff::MAX);
    }
    assert_eq!(b.succeeded(), Some(112));
    assert_eq!(b.failed(), Backoff::FIRST, "a success starts over");
}
