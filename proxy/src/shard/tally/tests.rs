use std::sync::Arc;

use super::CallTally;

#[test]
fn calls_stored_and_removed_by_several_threads_add_up_per_source_and_in_all() {
    let tally = Arc::new(CallTally::default());
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let tally = tally.clone();
            std::thread::spawn(move || {
                let source = if i % 2 == 0 { "carrier" } else { "pbx" };
                for _ in 0..1000 {
                    tally.add(source);
                }
                for _ in 0..400 {
                    tally.remove(source);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(tally.total(), 4 * 600);
    assert_eq!(tally.calls_from("carrier"), 2 * 600);
    assert_eq!(tally.calls_from("pbx"), 2 * 600);
    assert_eq!(tally.calls_from("nobody"), 0);
}

#[test]
fn a_removal_more_than_was_added_leaves_zero_not_a_wrapped_count() {
    let tally = CallTally::default();
    tally.add("carrier");
    tally.remove("carrier");
    tally.remove("carrier");
    tally.remove("other");
    assert_eq!((tally.total(), tally.calls_from("carrier")), (0, 0));
}
