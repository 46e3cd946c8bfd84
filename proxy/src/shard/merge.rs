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

fn array(json: &str) -> Vec<Value> {
    match serde_json::from_str(json) {
        Ok(Value::Array(items)) => items,
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
