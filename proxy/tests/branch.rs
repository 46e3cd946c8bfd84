//! A branch office whose WAN fails for real (testkit's branch lab:
//! network namespaces for the branch LAN, the WAN router and the central
//! site; the branch's Tandem in the root namespace between them), with
//! the default `[[wan]]` settings. On the branch LAN: two phones (SIPp,
//! registered with digest, answering their calls) and the local gateway
//! (SIPp, a trunk); across the WAN: the central PBX (SIPp). One test each:
//!
//! a. phone-to-phone calls go on with no failure while the WAN is cut,
//!    judged down, healed and judged up again;
//! b. during the outage the gateway's call to a DID reaches the phone the
//!    rule maps it to;
//! c. after the cut the first outbound call through the gateway succeeds
//!    within 5 s; after the heal new calls go central within 30 s (both
//!    figures printed);
//! d. a WAN with 20 % loss and 300 ms delay each way, but alive, is not
//!    judged down in 60 s;
//! e. a phone's call up across the WAN when it is cut is ended with a BYE
//!    carrying a Reason (CDR reason `wan_down`) within 5 s.
//!
//! Every lab has a name, subnet and namespaces of its own, so the tests
//! run in parallel; every process is killed by pid when its handle (or
//! the lab) drops, also when a test fails; every wait has a deadline.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use testkit::branchlab::BranchLab;
use testkit::{Cdr, Sipp, SippProcess, Tandem, TandemConfig};

const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");
const DEADLINE: Duration = Duration::from_secs(20);
const DOMAIN: &str = "branch.test";
/// The phones: extension numbers as users, so that a DID (555 + the
/// extension) maps onto one by a rewrite.
const PHONES: [(&str, &str); 2] = [("1001", "pw1001"), ("1002", "pw1002")];
/// Host number of the phones' address on the branch LAN; the gateway has
/// the lab's first address (a trunk: its calls are not phones').
const PHONE_HOST: u8 = 20;
/// The issue's targets with the default settings.
const FIRST_FALLBACK_CALL_WITHIN: Duration = Duration::from_secs(5);
const CENTRAL_AGAIN_WITHIN: Duration = Duration::from_secs(30);
/// The slow, lossy but alive WAN: each way (a round trip survives with
/// 0.8² = 64 %, in 600 ms).
const LOSS_PERCENT: u8 = 20;
const DELAY_MS: u32 = 300;

/// The central group's health across the WAN, as for a group behind a
/// slow, lossy WAN: a probe answered within 1 s (a 600 ms round trip
/// plus margin) counts, and a member is taken down only after 3 missed
/// probes. The `[[wan]]` itself has no settings: its defaults are under
/// test.
const CENTRAL_HEALTH: &str = "interval_ms = 1000\ntimeout_ms = 1000\nfailures_to_down = 3\n";

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/sipp")
        .join(name)
}

/// Milliseconds since the epoch: CDRs carry wall-clock times.
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `[authentication …]` of SIPp's injection files for `user`.
fn auth_field(user: &str) -> String {
    let password = PHONES
        .iter()
        .find(|(u, _)| *u == user)
        .map(|(_, p)| *p)
        .expect("a phone user");
    format!("{user};{password};[authentication username={user} password={password}]")
}

/// The registrar, the groups and the rules of a branch: phones by
/// location, the gateway's DIDs to phones, external numbers (leading 0)
/// central, or to the gateway while the WAN is down.
fn branch_toml(dc: IpAddr, gw: IpAddr) -> String {
    format!(
        "[registrar]\ndomains = [\"{DOMAIN}\"]\ncredentials_file = \"credentials\"\n\n\
         [[group]]\nname = \"central\"\nresume = false\n[group.health]\n{CENTRAL_HEALTH}\
         [[group.member]]\nname = \"pbx\"\naddress = \"{dc}:5060\"\n\n\
         [[group]]\nname = \"gateway\"\nprobe = \"off\"\n\
         [[group.member]]\nname = \"gw\"\naddress = \"{gw}:5060\"\n\n\
         [[wan]]\nname = \"dc\"\ngroups = [\"central\"]\n\n\
         [[rule]]\nname = \"phones\"\nruri_user_regex = \"^1[0-9]{{3}}$\"\nlocation = true\n\n\
         [[rule]]\nname = \"did-to-phone\"\nsource = \"trunk\"\nruri_user_regex = \"^555[0-9]{{4}}$\"\n\
         strip = 3\nlocation = true\n\n\
         [[rule]]\nname = \"out-local\"\nwan = \"down\"\nruri_user_prefix = \"0\"\ngroup = \"gateway\"\n\n\
         [[rule]]\nname = \"out-central\"\nruri_user_prefix = \"0\"\ngroup = \"central\"\n"
    )
}

/// A branch office running: the lab, the PBX at the centre, the gateway
/// on the branch LAN, Tandem with the WAN up. Processes first: they are
/// killed before the lab (its namespaces) goes.
struct Branch {
    tandem: Tandem,
    _pbx: SippProcess,
    _gateway: SippProcess,
    phone_ip: IpAddr,
    gateway_ip: IpAddr,
    lab: BranchLab,
}

impl Branch {
    async fn start() -> Branch {
        testkit::require_sipp();
        let lab = BranchLab::new().expect("branch lab (needs root, iproute2, nftables)");
        // The centre answers the branch LAN's addresses through the
        // router (Tandem's SIP address is on the branch side).
        let branch_net = {
            let o = lab.tandem_branch_addr().octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        };
        let routed = lab
            .run_in_router("ip")
            .args(["route", "add", &branch_net, "via"])
            .arg(lab.tandem_wan_addr().to_string())
            .status()
            .unwrap();
        assert!(routed.success());
        let phone_ip = IpAddr::from(lab.add_branch_addr(PHONE_HOST).unwrap());
        let dc = IpAddr::from(lab.dc_addr());
        let gw = IpAddr::from(lab.branch_addr());
        let pbx = uas(&lab.dc_ns(), dc).await;
        let gateway = uas(&lab.branch_ns(), gw).await;
        let config = TandemConfig::new([("gw-media", SocketAddr::new(gw, 5060))])
            .listen_ip(IpAddr::from(lab.tandem_branch_addr()))
            .trunk_networks([format!("{gw}/32")])
            .health(1000, 500, 2, 1)
            .file(
                "credentials",
                &testkit::credentials_file(TANDEM, DOMAIN, &PHONES),
                0o600,
            )
            .extra_toml(&branch_toml(dc, gw));
        let tandem = Tandem::start(TANDEM, config).await;
        tandem
            .wait_metric("tandem_wan_state", &[("wan", "dc")], 1.0, DEADLINE)
            .await;
        Branch {
            tandem,
            _pbx: pbx,
            _gateway: gateway,
            phone_ip,
            gateway_ip: gw,
            lab,
        }
    }

    /// Both phones registered (digest) from the phones' address by one
    /// SIPp, which answers their calls (`-oocsn uas`) for `for_s` seconds.
    async fn register_phones(&self, for_s: u32) -> SippProcess {
        let sipp = Sipp::scenario_file(
            &scenario("register_digest.xml"),
            Some(self.tandem.sip_addr()),
        )
        .in_netns(&self.lab.branch_ns())
        .local_ip(&self.phone_ip.to_string());
        let users: Vec<String> = PHONES.iter().map(|(u, _)| auth_field(u)).collect();
        let csv = injection_file(&sipp, "users.csv", &users);
        let phones = sipp
            .args([
                "-inf", &csv, "-key", "domain", DOMAIN, "-key", "expires", "600",
            ])
            .args(["-d", &(for_s * 1000).to_string(), "-oocsn", "uas"])
            .args(["-m", &PHONES.len().to_string()])
            .spawn();
        self.tandem
            .wait_metric(
                "tandem_registrations_active",
                &[],
                PHONES.len() as f64,
                DEADLINE,
            )
            .await;
        phones
    }

    /// Calls from the phones' address (a phone's INVITE, challenged and
    /// authenticated), one SIPp call per (caller, callee) in `calls`, in
    /// turn; add `-m`, `-r`, `-d`.
    fn phone_calls(&self, calls: &[(&str, &str)]) -> Sipp {
        let sipp = Sipp::scenario_file(
            &scenario("phone_call_uac.xml"),
            Some(self.tandem.sip_addr()),
        )
        .in_netns(&self.lab.branch_ns())
        .local_ip(&self.phone_ip.to_string());
        let lines: Vec<String> = calls
            .iter()
            .map(|(caller, callee)| format!("{};{callee}", auth_field(caller)))
            .collect();
        let csv = injection_file(&sipp, "calls.csv", &lines);
        sipp.args(["-inf", &csv, "-key", "domain", DOMAIN])
    }

    /// One external call from phone 1001 to `number` (held 100 ms),
    /// started now; SIPp gives up on it after 15 s.
    fn external_call(&self, number: &str) -> SippProcess {
        self.phone_calls(&[("1001", number)])
            .args(["-m", "1", "-d", "100"])
            .args(["-timeout", "15s", "-timeout_error"])
            .spawn()
    }

    /// Places a new external call every 0.5 s (to PREFIX00, PREFIX01, …;
    /// at most 100) until one is answered by `group`; how long after
    /// `since_ms` (ms since the epoch) that answer came. The calls are
    /// left running in `attempts`.
    async fn first_answered_by(
        &self,
        group: &str,
        prefix: &str,
        since_ms: u64,
        attempts: &mut Vec<SippProcess>,
    ) -> Duration {
        let mut numbers = Vec::new();
        for i in 0..100 {
            let number = format!("{prefix}{i:02}");
            attempts.push(self.external_call(&number));
            numbers.push(number);
            tokio::time::sleep(Duration::from_millis(500)).await;
            if let Some(ms) = first_answer(&self.tandem.cdrs(), group, &numbers) {
                return Duration::from_millis(ms.saturating_sub(since_ms));
            }
        }
        panic!(
            "no call answered by {group} within 50 s\n{}",
            self.tandem.log_tail(30)
        );
    }

    async fn wan_state(&self) -> Option<f64> {
        let m = self.tandem.metrics().await;
        m.value("tandem_wan_state", &[("wan", "dc")])
    }

    async fn wan_transitions(&self, to: &str) -> f64 {
        let m = self.tandem.metrics().await;
        m.value("tandem_wan_transitions_total", &[("wan", "dc"), ("to", to)])
            .unwrap_or(0.0)
    }
}

/// A SIPp UAS on `ip`:5060 in namespace `ns` that answers calls and
/// OPTIONS (the PBX, the gateway).
async fn uas(ns: &str, ip: IpAddr) -> SippProcess {
    let mut p = Sipp::builtin("uas", None)
        .in_netns(ns)
        .local_ip(&ip.to_string())
        .with_port(5060)
        .arg("-aa")
        .spawn();
    p.wait_ready(Duration::from_secs(5)).await;
    p
}

/// Writes SIPp's injection file (`SEQUENTIAL`, then `lines`) into its
/// working directory; its path.
fn injection_file(sipp: &Sipp, name: &str, lines: &[String]) -> String {
    let path = sipp.workdir().join(name);
    std::fs::write(&path, format!("SEQUENTIAL\n{}\n", lines.join("\n"))).unwrap();
    path.display().to_string()
}

/// The earliest answer (ms since the epoch) of a call to `group` whose
/// callee is one of `numbers`.
fn first_answer(cdrs: &[Cdr], group: &str, numbers: &[String]) -> Option<u64> {
    cdrs.iter()
        .filter(|c| c.get("group") == group && numbers.iter().any(|n| c.get("callee").contains(n)))
        .map(|c| c.num("answer_ms"))
        .filter(|&ms| ms > 0)
        .min()
}

#[tokio::test(flavor = "multi_thread")]
async fn phone_to_phone_calls_never_fail_while_the_wan_is_cut_and_healed() {
    let branch = Branch::start().await;
    let _phones = branch.register_phones(120).await;
    // 1001 and 1002 call each other in turn, 4 new calls a second, each
    // held 1 s, for 30 s: calls are up at every moment of the outage,
    // at the transition to down (when calls across the WAN are ended)
    // and at the one back to up.
    let mut stream = branch
        .phone_calls(&[("1001", "1002"), ("1002", "1001")])
        .args(["-r", "4", "-m", "120", "-d", "1000"])
        .spawn();
    stream.wait_stat("SuccessfulCall(C)", 4, DEADLINE).await;
    let (down_before, up_before) = (
        branch.wan_transitions("down").await,
        branch.wan_transitions("up").await,
    );
    branch.lab.cut().unwrap();
    branch
        .tandem
        .wait_metric("tandem_wan_state", &[("wan", "dc")], 0.0, DEADLINE)
        .await;
    branch.lab.heal().unwrap();
    branch
        .tandem
        .wait_metric(
            "tandem_wan_state",
            &[("wan", "dc")],
            1.0,
            Duration::from_secs(40),
        )
        .await;
    let out = stream.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(
        (out.successful, out.failed),
        (120, 0),
        "phone-to-phone calls failed\n{}\n{}",
        out.log,
        branch.tandem.log_tail(30)
    );
    // One transition each way (the start counts one to up already).
    assert_eq!(branch.wan_transitions("down").await, down_before + 1.0);
    assert_eq!(branch.wan_transitions("up").await, up_before + 1.0);
    let cdrs = branch.tandem.cdrs();
    assert!(
        cdrs.iter()
            .all(|c| c.get("rule") == "phones" && c.get("source") == "phone"),
        "{cdrs:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn during_the_outage_the_gateways_call_to_a_did_reaches_the_phone() {
    let branch = Branch::start().await;
    let phones = branch.register_phones(60).await;
    branch.lab.cut().unwrap();
    branch
        .tandem
        .wait_metric("tandem_wan_state", &[("wan", "dc")], 0.0, DEADLINE)
        .await;
    // The gateway (the trunk's address, another port than its UAS)
    // calls DID 5551002: the rule strips 555 and finds phone 1002.
    let out = Sipp::builtin("uac", Some(branch.tandem.sip_addr()))
        .in_netns(&branch.lab.branch_ns())
        .local_ip(&branch.gateway_ip.to_string())
        .args(["-s", "5551002", "-m", "1", "-d", "500"])
        .args(["-timeout", "15s", "-timeout_error"])
        .run(DEADLINE)
        .await;
    assert_eq!(
        out.successful,
        1,
        "{}\n{}",
        out.log,
        branch.tandem.log_tail(30)
    );
    let cdrs = branch.tandem.wait_cdrs(1, DEADLINE).await;
    assert_eq!(cdrs[0].get("rule"), "did-to-phone", "{:?}", cdrs[0]);
    // By `location = true` only a registered contact can have answered:
    // the phones' SIPp.
    assert_eq!(cdrs[0].get("source"), "trunk", "{:?}", cdrs[0]);
    eprintln!("the gateway's call to DID 5551002: {:?}", cdrs[0]);
    drop(phones);
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_cut_the_first_gateway_call_is_within_5_s_and_central_again_within_30_s_of_the_heal(
) {
    let branch = Branch::start().await;
    let _phones = branch.register_phones(90).await;
    let mut before = branch.external_call("0300");
    assert_eq!(before.wait_exit(DEADLINE).await.successful, 1);
    let cdrs = branch.tandem.wait_cdrs(1, DEADLINE).await;
    assert_eq!(cdrs[0].get("group"), "central", "{:?}", cdrs[0]);

    // Cut: a new call every 0.5 s (each its own number) until one has
    // gone through the gateway. Those routed central before the WAN is
    // judged down fail (no answer); SIPp's own timeout bounds them.
    branch.lab.cut().unwrap();
    let cut_ms = unix_ms();
    let mut attempts = Vec::new();
    let to_fallback = branch
        .first_answered_by("gateway", "04", cut_ms, &mut attempts)
        .await;
    eprintln!("cut -> first successful call through the gateway: {to_fallback:?}");

    // Heal: the same, until a call is answered by the centre again.
    branch.lab.heal().unwrap();
    let heal_ms = unix_ms();
    let to_central = branch
        .first_answered_by("central", "05", heal_ms, &mut attempts)
        .await;
    eprintln!("heal -> first call answered centrally again: {to_central:?}");
    for mut attempt in attempts {
        attempt.wait_exit(DEADLINE).await;
    }
    assert!(
        to_fallback <= FIRST_FALLBACK_CALL_WITHIN,
        "first fallback call {to_fallback:?} after the cut\n{}",
        branch.tandem.log_tail(30)
    );
    assert!(
        to_central <= CENTRAL_AGAIN_WITHIN,
        "first central call {to_central:?} after the heal\n{}",
        branch.tandem.log_tail(30)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lossy_slow_but_alive_wan_is_not_judged_down() {
    let branch = Branch::start().await;
    let (down_before, up_before) = (
        branch.wan_transitions("down").await,
        branch.wan_transitions("up").await,
    );
    branch.lab.set_delay(DELAY_MS).unwrap();
    branch.lab.set_loss(LOSS_PERCENT).unwrap();
    // 60 s of a WAN that loses a fifth of the packets each way and takes
    // 600 ms for a round trip: the centre answers most probes, so the
    // WAN is never down.
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < until {
        assert_eq!(
            branch.wan_state().await,
            Some(1.0),
            "the WAN was judged down\n{}",
            branch.tandem.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // No transition at all (compared with the count before the loss, so
    // the WAN's first judgement, whatever it was, does not matter).
    assert_eq!(
        (
            branch.wan_transitions("down").await,
            branch.wan_transitions("up").await
        ),
        (down_before, up_before),
        "{}",
        branch.tandem.log_tail(30)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_across_the_wan_at_the_cut_ends_with_bye_and_reason_at_the_phone() {
    let branch = Branch::start().await;
    let _phones = branch.register_phones(60).await;
    // Phone 1001 talks to the central PBX; it waits for Tandem's BYE
    // (SIPp's global timeout ends it otherwise).
    let mut call = branch
        .phone_calls(&[("1001", "0300")])
        .args(["-m", "1", "-set", "hangup", "remote"])
        .args(["-timeout", "30s", "-timeout_error"])
        .trace_messages()
        .spawn();
    call.wait_count("_200_Recv", 1, DEADLINE).await;
    branch.lab.cut().unwrap();
    let cut_ms = unix_ms();
    let out = call.wait_exit(Duration::from_secs(40)).await;
    assert_eq!(
        out.successful,
        1,
        "the phone got no BYE with a Reason\n{}\n{}",
        out.log,
        branch.tandem.log_tail(30)
    );
    assert!(
        out.messages
            .contains("Reason: Q.850;cause=16;text=\"wan_down\""),
        "{}",
        out.messages
    );
    let cdrs = branch.tandem.wait_cdrs(1, DEADLINE).await;
    assert_eq!(cdrs[0].get("reason"), "wan_down", "{:?}", cdrs[0]);
    let ended = Duration::from_millis(cdrs[0].num("end_ms").saturating_sub(cut_ms));
    eprintln!("cut -> the call across the WAN ended (BYE to the phone): {ended:?}");
    assert!(ended <= FIRST_FALLBACK_CALL_WITHIN, "{ended:?}");
}
