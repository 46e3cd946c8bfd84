//! Dual registration, the call machine's side (`crate::upstream` is the
//! state): the registrar's binding changes go in, the REGISTERs to the
//! central registrar go out as client transactions
//! ([`ClientRole::Upstream`]), and their answers and failures come back.
//!
//! The upstream REGISTER names the AOR at the central domain, with
//! Contact `<sip:USER@TANDEM>`: the centre's calls to the phone come to
//! Tandem, whose `location = true` rule finds the phone by the user part.
//! Its digest answer comes from the HA1 of the central realm in the
//! registrar's credentials file.
//!
//! The WAN's state is read, not pushed: before anything is sent the
//! state machine is told whether its `[[wan]]` is down now, so nothing
//! goes into a dead link and the renewals are paced when it returns.

use sipcore::digest::Challenge;
use sipcore::message::{Message, Method, RequestBuilder, Uri};
use sipcore::transport::{Target, TransportKind};

use super::{ClientRole, Machine};
use crate::upstream::{Answer, Outcome, Upstream, UpstreamRecord, UpstreamRequest};

/// The upstream state and what the metrics last heard of it.
pub struct UpstreamLink {
    pub state: Upstream,
    reported: Option<[usize; 5]>,
}

impl Machine {
    /// Turns dual registration on (or off). At start the bindings loaded
    /// from the snapshot are registered, paced over the renew window.
    pub fn set_upstream(
        &mut self,
        upstream: Option<Upstream>,
        now: std::time::Instant,
        wall: super::UnixMillis,
    ) {
        let on = upstream.is_some();
        self.upstream = upstream.map(|state| UpstreamLink {
            state,
            reported: None,
        });
        if let Some(reg) = self.registrar.as_mut() {
            if on {
                reg.bindings.watch();
            }
        }
        self.upstream_reconcile(now, wall);
        // The gauges exist from the start, not from the first REGISTER.
        self.report_upstream();
    }

    /// The upstream registrations (admin listing, replication).
    pub fn upstream(&self) -> Option<&Upstream> {
        self.upstream.as_ref().map(|u| &u.state)
    }

    /// SIGHUP: new settings for the next requests.
    pub fn set_upstream_settings(&mut self, settings: crate::upstream::UpstreamSettings) {
        if let Some(u) = self.upstream.as_mut() {
            u.state.set_settings(settings);
        }
    }

    /// Start-up and takeover: every AOR with bindings is in the table,
    /// every AOR without is removed, and what is due is renewed paced
    /// (a new active node does not re-register everything at once).
    pub fn upstream_reconcile(&mut self, now: std::time::Instant, wall: super::UnixMillis) {
        let (Some(up), Some(reg)) = (self.upstream.as_mut(), self.registrar.as_mut()) else {
            return;
        };
        // What happened before now is in the table already.
        reg.bindings.take_watched();
        let gone: Vec<String> = up
            .state
            .aors()
            .filter(|aor| reg.bindings.lookup(aor, wall).is_empty())
            .map(str::to_owned)
            .collect();
        for aor in gone {
            up.state.binding(&aor, false, now);
        }
        for (aor, _) in reg.bindings.iter() {
            if up.state.get(aor).is_none() {
                up.state.binding(aor, true, now);
            }
        }
        up.state.pace_pending(now);
    }

    /// After every event: binding changes are passed on, the WAN's state
    /// read, what is due sent, the gauges updated.
    pub(super) fn upstream_step(&mut self) {
        if self.upstream.is_none() {
            return;
        }
        let now = self.now;
        let wall = self.wall;
        let changed = self
            .registrar
            .as_mut()
            .map(|r| r.bindings.take_watched())
            .unwrap_or_default();
        let down = self.upstream_wan_down();
        let Some(up) = self.upstream.as_mut() else {
            return;
        };
        for aor in changed {
            let present = self
                .registrar
                .as_ref()
                .is_some_and(|r| !r.bindings.lookup(&aor, wall).is_empty());
            up.state.binding(&aor, present, now);
        }
        up.state.set_wan_down(down, now);
        let requests = up.state.tick(now);
        for request in requests {
            self.send_upstream(request);
        }
        self.report_upstream();
    }

    /// Whether the `[[wan]]` the centre lies across is down now.
    fn upstream_wan_down(&self) -> bool {
        let Some(name) = self
            .upstream
            .as_ref()
            .and_then(|u| u.state.settings().wan.as_deref())
        else {
            return false;
        };
        self.wans
            .iter()
            .find(|w| w.name() == name)
            .is_some_and(crate::wan::Wan::is_down)
    }

    fn report_upstream(&mut self) {
        let Some(up) = self.upstream.as_mut() else {
            return;
        };
        let counts = up.state.counts();
        if up.reported != Some(counts) {
            up.reported = Some(counts);
            self.obs.upstream_states(counts);
        }
    }

    /// Builds and sends one upstream REGISTER.
    fn send_upstream(&mut self, request: UpstreamRequest) {
        let Some(up) = self.upstream.as_ref() else {
            return;
        };
        let settings = up.state.settings().clone();
        let user = request.aor.split_once('@').map_or("", |(u, _)| u);
        let aor_uri = format!("sip:{user}@{}", settings.domain);
        let request_uri = format!("sip:{}", settings.domain);
        let contact = format!(
            "<sip:{user}@{}>;expires={}",
            self.settings.advertised, request.expires_s
        );
        let authorization = request.auth.as_ref().and_then(|auth| {
            let c = &auth.challenge;
            let ha1 = self
                .registrar
                .as_ref()?
                .auth
                .credentials()
                .ha1(&c.realm, user, c.algorithm)?
                .to_owned();
            let cnonce = self.tokens.token(16);
            let value = sipcore::digest::authorization_with_ha1(
                c,
                user,
                &ha1,
                "REGISTER",
                &request_uri,
                &cnonce,
                auth.nc,
            );
            let name = if auth.proxy {
                "Proxy-Authorization"
            } else {
                "Authorization"
            };
            Some((name, value))
        });
        let mut b = RequestBuilder::new(&Method::Register, &request_uri)
            .header("Via", &self.tokens.via(&self.settings, TransportKind::Udp))
            .header("Max-Forwards", "70")
            .header(
                "From",
                &format!("<{aor_uri}>;tag={}", self.tokens.token(10)),
            )
            .header("To", &format!("<{aor_uri}>"))
            .header("Call-ID", &request.call_id)
            .header("CSeq", &format!("{} REGISTER", request.cseq))
            .header("Contact", &contact)
            .header("Expires", &request.expires_s.to_string());
        if let Some((name, value)) = &authorization {
            b = b.header(name, value);
        }
        let bytes = b.header("User-Agent", "tandem").build_message();
        tracing::debug!(
            aor = %request.aor,
            cseq = request.cseq,
            expires = request.expires_s,
            "upstream REGISTER"
        );
        self.send_request(
            bytes,
            Target::udp(settings.registrar),
            ClientRole::Upstream { aor: request.aor },
        );
    }

    /// The centre answered our REGISTER for `aor`.
    pub(super) fn on_upstream_response(&mut self, aor: String, response: Message) {
        let status = response.status().unwrap_or(0);
        if status < 200 {
            return;
        }
        let now = self.now;
        let answer = self.upstream_answer(&aor, &response, status);
        let down = self.upstream_wan_down();
        let Some(up) = self.upstream.as_mut() else {
            return;
        };
        up.state.set_wan_down(down, now);
        let (outcome, again) = up.state.on_answer(&aor, &answer, now);
        if outcome == Outcome::Failed {
            tracing::warn!(aor, status, "upstream registration refused");
        }
        self.obs.upstream_register(outcome.as_str());
        if let Some(request) = again {
            self.send_upstream(request);
        }
        self.report_upstream();
    }

    /// Our REGISTER for `aor` got no answer.
    pub(super) fn on_upstream_failure(&mut self, aor: String) {
        let now = self.now;
        let Some(up) = self.upstream.as_mut() else {
            return;
        };
        if up.state.on_failure(&aor, now) == Outcome::Failed {
            tracing::debug!(aor, "upstream REGISTER got no answer");
            self.obs.upstream_register("timeout");
        }
        self.report_upstream();
    }

    /// The answer as plain data: the time granted to our Contact, the
    /// challenge we can answer.
    fn upstream_answer(&self, aor: &str, response: &Message, status: u16) -> Answer {
        let user = aor.split_once('@').map_or("", |(u, _)| u);
        let advertised = self.settings.advertised;
        let ours = |uri: &str| {
            Uri::parse(uri).is_ok_and(|u| {
                u.user == Some(user)
                    && u.host == advertised.ip().to_string()
                    && u.port.unwrap_or(5060) == advertised.port()
            })
        };
        let granted_s = response
            .contacts()
            .filter_map(Result::ok)
            .find(|c| ours(c.uri))
            .and_then(|c| c.param("expires").and_then(|e| e.trim().parse().ok()))
            .or_else(|| response.expires());
        let number = |name: &str| {
            response
                .header(name)
                .and_then(|v| v.split([' ', ';', '(']).next())
                .and_then(|v| v.trim().parse::<u32>().ok())
        };
        let proxy = status == 407;
        let header = if proxy {
            "Proxy-Authenticate"
        } else {
            "WWW-Authenticate"
        };
        let realm = self
            .upstream
            .as_ref()
            .map(|u| u.state.settings().realm.as_str())
            .unwrap_or("");
        let credentials = self.registrar.as_ref().map(|r| r.auth.credentials());
        // The first challenge (servers list them by preference) in the
        // central realm with an algorithm we hold the HA1 for.
        let challenge = response
            .headers(header)
            .filter_map(|v| Challenge::parse(v).ok())
            .find(|c| {
                c.realm == realm
                    && credentials.is_some_and(|cr| cr.ha1(realm, user, c.algorithm).is_some())
            });
        Answer {
            status,
            granted_s,
            min_expires: number("Min-Expires"),
            challenge,
            proxy,
            retry_after_s: number("Retry-After"),
        }
    }

    /// A replicated upstream record (follower), or a deletion.
    pub fn apply_upstream_record(
        &mut self,
        aor: &str,
        record: Option<&UpstreamRecord>,
        now: std::time::Instant,
        wall: super::UnixMillis,
    ) {
        if let Some(up) = self.upstream.as_mut() {
            up.state.apply_record(aor, record, now, wall);
        }
    }

    /// AORs whose upstream registration changed, with their records, for
    /// the standby (`now`/`wall`: the present, to date the records).
    pub fn take_upstream_changes(
        &mut self,
        now: std::time::Instant,
        wall: super::UnixMillis,
    ) -> Vec<(String, Option<UpstreamRecord>)> {
        let Some(up) = self.upstream.as_mut() else {
            return Vec::new();
        };
        up.state
            .take_changed()
            .into_iter()
            .map(|aor| {
                let rec = up.state.record(&aor, now, wall);
                (aor, rec)
            })
            .collect()
    }
}
