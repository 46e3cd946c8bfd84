use super::PortPool;

#[test]
fn pair_count_rounds_to_even_and_needs_room_for_rtcp() {
    assert_eq!(PortPool::pair_count(10000, 10003), 2);
    assert_eq!(PortPool::pair_count(10001, 10003), 1);
    assert_eq!(PortPool::pair_count(10000, 10000), 0);
    assert_eq!(PortPool::pair_count(10001, 10002), 0);
    assert_eq!(PortPool::pair_count(65534, 65535), 1);
    assert_eq!(PortPool::pair_count(65535, 65535), 0);
}

#[test]
fn allocates_even_ports_in_order_then_exhausts() {
    let mut p = PortPool::new(10001, 10007);
    assert_eq!(p.total_pairs(), 3);
    assert_eq!(p.allocate(), Some(10002));
    assert_eq!(p.allocate(), Some(10004));
    assert_eq!(p.allocate(), Some(10006));
    assert_eq!(p.allocate(), None);
    assert_eq!(p.free_pairs(), 0);
}

#[test]
fn freed_pair_is_reused_last() {
    let mut p = PortPool::new(10000, 10007);
    let a = p.allocate().unwrap();
    let b = p.allocate().unwrap();
    p.release(a);
    // The two never-used pairs come first, then the freed one.
    assert_eq!(p.allocate(), Some(10004));
    assert_eq!(p.allocate(), Some(10006));
    assert_eq!(p.allocate(), Some(a));
    assert_eq!(p.allocate(), None);
    p.release(b);
    assert_eq!(p.allocate(), Some(b));
}

#[test]
fn reserve_specific_pair_and_skip_its_stale_queue_entry() {
    let mut p = PortPool::new(10000, 10005);
    assert_eq!(p.reserve(10002), Ok(()));
    assert!(p.reserve(10002).is_err());
    assert!(p.reserve(10003).is_err(), "odd port");
    assert!(p.reserve(10006).is_err(), "outside the range");
    assert!(p.reserve(9998).is_err(), "below the range");
    assert_eq!(p.allocate(), Some(10000));
    assert_eq!(p.allocate(), Some(10004));
    assert_eq!(p.allocate(), None);
    p.release(10002);
    assert_eq!(p.free_pairs(), 1);
    assert_eq!(p.allocate(), Some(10002));
}

#[test]
fn double_release_is_harmless() {
    let mut p = PortPool::new(10000, 10003);
    let a = p.allocate().unwrap();
    p.release(a);
    p.release(a);
    p.release(12345);
    assert_eq!(p.free_pairs(), 2);
    assert_eq!(p.allocate(), Some(10002));
    assert_eq!(p.allocate(), Some(10000));
    assert_eq!(p.allocate(), None);
}
