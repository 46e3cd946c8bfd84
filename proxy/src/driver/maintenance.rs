//! Planned work on media servers, the driver's side: `GET /calls`, `GET
//! /members`, `POST /members/NAME/drain|undrain` and `POST /move` reach
//! the machine here (`b2bua::maintenance` decides). Drains and moves are
//! the active node's: a standby's members follow the active node's
//! records (the drain is replicated with the member's health) and it has
//! no calls to move.

use super::{now_millis, Command, Driver};

impl Driver {
    pub(super) fn on_maintenance_command(&mut self, cmd: Command) {
        match cmd {
            Command::Calls {
                member,
                limit,
                reply,
            } => {
                let calls = self
                    .machine
                    .calls_view(member.as_deref(), limit, now_millis())
                    .map(|calls| to_json(&calls));
                let _ = reply.send(calls);
            }
            Command::Members { reply } => {
                let _ = reply.send(to_json(&self.machine.members_view()));
            }
            Command::DrainMember { member, on, reply } => {
                let result = self
                    .only_when_serving()
                    .and_then(|()| self.machine.drain_member(&member, on));
                let _ = reply.send(result);
                // The standby learns it now, not a tick later: a takeover
                // in between must not hand the member new calls.
                self.replicate();
            }
            Command::MoveCalls {
                from,
                to,
                max,
                reply,
            } => {
                if let Err(why) = self.only_when_serving() {
                    let _ = reply.send(Err(why));
                    return;
                }
                let now = std::time::Instant::now();
                let (result, actions) =
                    self.machine
                        .move_calls(&from, to.as_deref(), max, now, now_millis());
                let _ = reply.send(result);
                // The old legs' BYEs go out now; the resumes follow on the
                // survival tick, paced.
                for action in actions {
                    if let Some(follow) = self.carry_out(action) {
                        self.feed(follow);
                    }
                }
            }
            other => tracing::error!(command = ?other, "not a maintenance command"),
        }
    }

    fn only_when_serving(&self) -> Result<(), String> {
        if self.serving() {
            Ok(())
        } else {
            Err("this node is the standby: ask the active node".into())
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
}
