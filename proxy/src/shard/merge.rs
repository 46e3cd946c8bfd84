//! The shards' answers to one admin command, merged into the answer one
//! engine holding every call would give.

use serde_json::Value;

use crate::b2bua::MoveReport;

const NO_ANSWER: &str = "no shard answered";

/// `tandem calls`: every shard's calls, oldest first, at most `limit`.
pub fn calls(answers: Vec<Result<String, String>>, limit: usize) -> Result<String, String> {
    let mut all = Vec::new();
    for answer in answers {
        all.extend(array(&answer?));
    }
    all.sort_by_key(|call| std::cmp::Reverse(call["age_s"].as_u64().unwrap_or(0)));
    all.truncate(limit);
    Ok(Value::Array(all).to_string())
}

/// `tandem members`: the members as shard 0 sees them (every shard has
/// the same list, in the same order), with every shard's calls added up.
pub fn members(answers: Vec<String>) -> String {
    let mut answers = answers.iter().map(|a| array(a));
    let Some(mut merged) = answers.next() else {
        return "[]".to_owned();
    };
    for other in answers {
        for (member, theirs) in merged.iter_mut().zip(other) {
            let calls =
                member["calls"].as_u64().unwrap_or(0) + theirs["calls"].as_u64().unwrap_or(0);
            member["calls"] = calls.into();
        }
    }
    Value::Array(merged).to_string()
}

/// A command every shard carries out the same way (drain): shard 0's
/// answer.
pub fn first<T>(answers: Vec<Result<T, String>>) -> Result<T, String> {
    answers
        .into_iter()
        .next()
        .unwrap_or_else(|| Err(NO_ANSWER.to_owned()))
}

/// `tandem move`: what every shard scheduled, added up.
pub fn moves(answers: Vec<Result<MoveReport, String>>) -> Result<MoveReport, String> {
    let mut total: Option<MoveReport> = None;
    for answer in answers {
        let r = answer?;
        match &mut total {
            None => total = Some(r),
            Some(t) => {
                t.scheduled += r.scheduled;
                t.not_answered += r.not_answered;
                t.moving += r.moving;
            }
        }
    }
    total.ok_or_else(|| NO_ANSWER.to_owned())
}

/// The status page (`GET /overview`): shard 0's document (its members'
/// states are the node's: it probes them), with every shard's calls,
/// last-hour counts and events added.
pub fn overview(answers: Vec<String>) -> String {
    let mut docs = answers
        .iter()
        .filter_map(|a| serde_json::from_str::<Value>(a).ok());
    let Some(mut merged) = docs.next() else {
        return "{}".to_owned();
    };
    for other in docs {
        for path in [
            &["calls", "active"][..],
            &["last_hour", "resumed"],
            &["last_hour", "resume_failures"],
            &["last_hour", "takeovers"],
        ] {
            add_at(&mut merged, &other, path);
        }
        for key in ["per_group", "per_trunk"] {
            let mine = merged
                .get_mut("calls")
                .and_then(|c| c.get_mut(key))
                .and_then(Value::as_object_mut);
            if let (Some(mine), Some(theirs)) = (mine, other["calls"][key].as_object()) {
                for (name, n) in theirs {
                    let sum = mine.get(name).and_then(Value::as_u64).unwrap_or(0)
                        + n.as_u64().unwrap_or(0);
                    mine.insert(name.clone(), sum.into());
                }
            }
        }
        let groups = merged
            .get_mut("groups")
            .and_then(Value::as_array_mut)
            .map(|g| g.iter_mut());
        for (group, theirs) in groups.into_iter().flatten().zip(array_of(&other["groups"])) {
            add_at(group, theirs, &["calls"]);
            let members = group
                .get_mut("members")
                .and_then(Value::as_array_mut)
                .map(|m| m.iter_mut());
            for (member, theirs) in members
                .into_iter()
                .flatten()
                .zip(array_of(&theirs["members"]))
            {
                add_at(member, theirs, &["calls"]);
            }
        }
        // Their events, but not their copies of shard 0's findings.
        let theirs = array_of(&other["events"])
            .iter()
            .filter(|e| !matches!(e["kind"].as_str(), Some("member_up" | "member_down")));
        if let Some(events) = merged.get_mut("events").and_then(Value::as_array_mut) {
            events.extend(theirs.cloned());
        }
    }
    if let Some(events) = merged.get_mut("events").and_then(Value::as_array_mut) {
        // Newest first, as one journal keeps them, and as many.
        events.sort_by_key(|e| std::cmp::Reverse(e["at"].as_u64().unwrap_or(0)));
        events.truncate(crate::b2bua::journal::EVENTS);
    }
    merged.to_string()
}

/// `into[path] += from[path]` for numbers present in both; anything
/// else is left as it is (never a panic on an unexpected shape).
fn add_at(into: &mut Value, from: &Value, path: &[&str]) {
    let mut mine = Some(into);
    let mut theirs = Some(from);
    for key in path {
        mine = mine.and_then(|v| v.get_mut(*key));
        theirs = theirs.and_then(|v| v.get(*key));
    }
    if let (Some(mine), Some(theirs)) = (mine, theirs.and_then(Value::as_u64)) {
        if let Some(n) = mine.as_u64() {
            *mine = (n + theirs).into();
        }
    }
}

fn array_of(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

fn array(json: &str) -> Vec<Value> {
    match serde_json::from_str(json) {
        Ok(Value::Array(items)) => items,
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
