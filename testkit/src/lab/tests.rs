use super::*;

#[test]
fn names_are_short_and_distinct() {
    let a = unique_name("Vip-Test");
    let b = unique_name("Vip-Test");
    assert_eq!(a.len(), 8);
    assert!(a.starts_with("vip"), "{a}");
    assert!(
        a.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
        "{a}"
    );
    assert_ne!(a, b);
    assert_eq!(unique_name("").len(), 8);
}

#[test]
fn words_after_keys() {
    let link = "3: eth0@if4: <UP> mtu 1500 link/ether 02:77:00:00:00:02 brd ff:ff:ff:ff:ff:ff";
    assert_eq!(
        word_after(link, "link/ether").as_deref(),
        Some("02:77:00:00:00:02")
    );
    assert_eq!(word_after("10.77.0.100 FAILED", "lladdr"), None);
}
