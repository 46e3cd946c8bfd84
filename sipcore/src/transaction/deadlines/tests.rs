use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::*;

/// A small deterministic generator (no dependency for a test).
fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

/// Timers started over time with many durations (more than get a queue)
/// and fired in between come out exactly in the heap's order.
#[test]
fn fires_in_the_order_of_a_heap() {
    let t0 = Instant::now();
    let mut deadlines = Deadlines::default();
    let mut heap = BinaryHeap::new();
    let mut rng = 7u64;
    let mut now = t0;
    for seq in 0..20_000u64 {
        now += Duration::from_micros(lcg(&mut rng) % 300);
        // A few common durations and a spread of rare ones.
        let after = match lcg(&mut rng) % 10 {
            0..=6 => Duration::from_millis(
                [500, 1000, 2000, 4000, 5000, 32000][lcg(&mut rng) as usize % 6],
            ),
            _ => Duration::from_millis(lcg(&mut rng) % 40),
        };
        let d = (now + after, seq, seq % 97, Timer::A);
        deadlines.push(after, d);
        heap.push(Reverse(d));
        assert_eq!(deadlines.len(), heap.len());
        // Fire what is due now, from both.
        while heap.peek().is_some_and(|Reverse(d)| d.0 <= now) {
            let Reverse(expected) = heap.pop().unwrap();
            assert_eq!(deadlines.peek(), Some(expected));
            assert_eq!(deadlines.pop(), Some(expected));
        }
    }
    while let Some(Reverse(expected)) = heap.pop() {
        assert_eq!(deadlines.pop(), Some(expected));
    }
    assert_eq!(deadlines.pop(), None);
    assert_eq!(deadlines.len(), 0);
}

/// One duration, a deadline earlier than the last one queued for it (as
/// a clock that went back would make): still fired first.
#[test]
fn an_earlier_deadline_of_a_queued_duration_comes_first() {
    let t0 = Instant::now();
    let after = Duration::from_millis(500);
    let mut deadlines = Deadlines::default();
    deadlines.push(after, (t0 + after, 1, 1, Timer::E));
    deadlines.push(after, (t0 + Duration::from_millis(100), 2, 2, Timer::E));
    assert_eq!(deadlines.pop().map(|d| d.1), Some(2));
    assert_eq!(deadlines.pop().map(|d| d.1), Some(1));
    assert_eq!(deadlines.pop(), None);
}
