use std::hash::BuildHasher;

use super::*;

/// Two maps hash the same key differently (each has its own seed), and
/// one map always the same way.
#[test]
fn each_map_has_a_seed_of_its_own() {
    let (a, b) = (Hasher::default(), Hasher::default());
    let key = "z9hG4bKabc123.2893a46ecb8ba8bddbfc";
    assert_eq!(a.hash_one(key), a.clone().hash_one(key));
    assert_ne!(a.hash_one(key), b.hash_one(key));
}
