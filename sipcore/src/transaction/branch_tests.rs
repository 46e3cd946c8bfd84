use super::*;

#[test]
fn a_branch_verifies_under_its_key_only() {
    let key = BranchKey::from_secret(b"a shared secret of the pair");
    let branch = key.branch("abc123");
    assert!(branch.starts_with("z9hG4bKabc123."), "{branch}");
    assert_eq!(branch.len(), "z9hG4bKabc123.".len() + 2 * TAG_BYTES);
    assert!(key.verify(&branch));
    // The other node of the pair derives the same key.
    assert!(BranchKey::from_secret(b"a shared secret of the pair").verify(&branch));
    // Another key, another process: not ours.
    assert!(!BranchKey::from_secret(b"another secret").verify(&branch));
    assert!(!BranchKey::random().verify(&branch));
}

#[test]
fn forged_and_altered_branches_do_not_verify() {
    let key = BranchKey::random();
    let branch = key.branch("n0nce");
    // Another nonce with the same tag.
    assert!(!key.verify(&branch.replace("n0nce", "n0ncf")));
    // A flipped tag digit.
    let mut flipped = branch.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
    assert!(!key.verify(std::str::from_utf8(&flipped).unwrap()));
    // Branches of others: plain RFC 3261, no cookie, short or odd tags.
    for other in [
        "z9hG4bK776asdhds",
        "z9hG4bKn0nce.",
        "z9hG4bKn0nce.00",
        "z9hG4bKn0nce.zz112233445566778899",
        "n0nce.00112233445566778899",
        "",
    ] {
        assert!(!key.verify(other), "{other}");
    }
}

#[test]
fn the_key_is_not_printed() {
    let key = BranchKey::from_secret(b"secret");
    assert_eq!(format!("{key:?}"), "BranchKey(..)");
}

/// The tag is HMAC-SHA256 of the nonce under the derived key, its first
/// 10 bytes in lower-case hex: fixed, so that the two nodes of a pair
/// running different releases (a rolling upgrade) still recognise each
/// other's branches. The value is Python's `hmac` module's.
#[test]
fn the_tag_is_hmac_sha256_of_the_nonce_in_hex() {
    let key = BranchKey::from_secret(b"a shared secret of the pair");
    assert_eq!(key.branch("abc123"), "z9hG4bKabc123.2893a46ecb8ba8bddbfc");
}
