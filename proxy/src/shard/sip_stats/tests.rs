use super::*;

fn received(udp: u64, live: usize, unverified: u64) -> EndpointFigures {
    let mut s = EndpointStats::default();
    s.transport.udp.messages_received = udp;
    s.transactions.live = live;
    EndpointFigures {
        stats: s,
        unverified_responses: unverified,
    }
}

#[test]
fn the_sum_is_every_shards_last_snapshot() {
    let slots = EndpointSlots::new(3);
    assert_eq!(slots.sum(), EndpointFigures::default());
    // Shard 1 reports before shard 0: the others add nothing yet.
    slots.publish(1, received(5, 2, 1));
    assert_eq!(slots.sum(), received(5, 2, 1));
    slots.publish(0, received(7, 1, 0));
    slots.publish(2, received(1, 0, 3));
    assert_eq!(slots.sum(), received(13, 3, 4));
    // A later snapshot replaces the shard's last one, not adds to it.
    slots.publish(1, received(6, 0, 2));
    assert_eq!(slots.sum(), received(14, 1, 5));
    // No such shard.
    slots.publish(3, received(100, 100, 100));
    assert_eq!(slots.sum(), received(14, 1, 5));
}
