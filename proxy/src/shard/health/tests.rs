use super::HealthShare;

#[test]
fn followers_get_shard_0s_findings_once_per_change_and_do_not_probe() {
    let mut shares = HealthShare::for_shards(3);
    assert_eq!(shares.len(), 3);
    let probing: Vec<bool> = shares.iter().map(HealthShare::probes).collect();
    assert_eq!(probing, [true, false, false]);
    let members = [("ms1", true), ("ms2", true)];
    shares[0].publish(&members);
    let got = shares[1].changed();
    assert_eq!(
        got,
        Some(vec![("ms1".to_owned(), true), ("ms2".to_owned(), true)])
    );
    // Nothing new: nothing to take.
    assert_eq!(shares[1].changed(), None);
    shares[0].publish(&members);
    assert_eq!(shares[1].changed(), None);
    // ms2 down: every follower hears it, once.
    shares[0].publish(&[("ms1", true), ("ms2", false)]);
    for follower in [1, 2] {
        let got = shares[follower].changed().unwrap();
        assert_eq!(got[1], ("ms2".to_owned(), false));
        assert_eq!(shares[follower].changed(), None);
    }
    // A follower publishes nothing, shard 0 follows nothing.
    shares[1].publish(&[("ms1", false)]);
    assert_eq!(shares[2].changed(), None);
    assert_eq!(shares[0].changed(), None);
}
