//! The operator's CLI output: `tandem status`, `calls`, `members` and
//! `move` as text for people, made from the admin API's JSON (which
//! `--json` prints as is, for scripts). Pure functions of the JSON, so
//! a node of another version that adds fields still prints.

use serde_json::Value;

/// `tandem status`: role, peer, epoch, replication lag, WANs.
pub fn describe_status(v: &Value) -> String {
    let mut out = String::new();
    let role = str_of(v, "role");
    if role == "single" {
        out.push_str("role: single (no standby pair)\n");
    } else {
        out.push_str(&format!(
            "node: {}  role: {role}  epoch: {}\n",
            str_of(v, "node"),
            num_of(v, "epoch")
        ));
        let peer = match v.get("peer_role").and_then(Value::as_str) {
            Some(peer) => format!("{peer} (epoch {})", num_of(v, "peer_epoch")),
            None => "none".to_owned(),
        };
        let standby = match v.get("standby_connected").and_then(Value::as_bool) {
            Some(true) => "standby connected",
            Some(false) => "NO STANDBY CONNECTED",
            None => "",
        };
        out.push_str(&format!("peer: {peer}  {standby}\n"));
        out.push_str(&format!(
            "replication: seq {}, lag {} records / {} ms, {} records held\n",
            num_of(v, "seq"),
            num_of(v, "lag_records"),
            num_of(v, "lag_ms"),
            num_of(v, "records"),
        ));
        out.push_str(&format!("takeovers: {}\n", num_of(v, "takeovers")));
    }
    match v.get("wan").and_then(Value::as_array) {
        Some(wans) if !wans.is_empty() => {
            let rows = wans
                .iter()
                .map(|w| {
                    vec![
                        str_of(w, "wan"),
                        str_of(w, "state").to_uppercase(),
                        str_of(w, "judged"),
                        str_of(w, "forced"),
                        num_of(w, "in_state_s"),
                        str_of(w, "last_change"),
                    ]
                })
                .collect();
            out.push_str(&table(
                &["WAN", "STATE", "JUDGED", "FORCED", "FOR_S", "LAST CHANGE"],
                rows,
            ));
        }
        _ => out.push_str("WANs: none\n"),
    }
    out
}

/// `tandem calls`: one line per call.
pub fn describe_calls(v: &Value) -> String {
    let calls = v.as_array().map(Vec::as_slice).unwrap_or_default();
    if calls.is_empty() {
        return "no calls\n".to_owned();
    }
    let rows = calls
        .iter()
        .map(|c| {
            vec![
                str_of(c, "call_id"),
                format!("{} → {}", str_of(c, "caller"), str_of(c, "callee")),
                str_of(c, "trunk"),
                str_of(c, "group"),
                str_of(c, "member"),
                str_of(c, "state"),
                age(c.get("age_s").and_then(Value::as_u64).unwrap_or(0)),
                resumes_of(c),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "CALL-ID",
            "CALLER → CALLEE",
            "TRUNK",
            "GROUP",
            "MEMBER",
            "STATE",
            "AGE",
            "RESUMES",
        ],
        rows,
    );
    out.push_str(&format!("{} calls\n", calls.len()));
    out
}

/// `tandem members`: one line per member.
pub fn describe_members(v: &Value) -> String {
    let members = v.as_array().map(Vec::as_slice).unwrap_or_default();
    let rows = members
        .iter()
        .map(|m| {
            vec![
                str_of(m, "group"),
                str_of(m, "member"),
                str_of(m, "address"),
                // Words, not colours: `down` in capitals stands out.
                match str_of(m, "state").as_str() {
                    "up" => "up".to_owned(),
                    other => other.to_uppercase(),
                },
                if m.get("draining").and_then(Value::as_bool) == Some(true) {
                    "DRAINING".to_owned()
                } else {
                    "no".to_owned()
                },
                num_of(m, "calls"),
            ]
        })
        .collect();
    table(
        &["GROUP", "MEMBER", "ADDRESS", "STATE", "DRAINING", "CALLS"],
        rows,
    )
}

/// `tandem move`'s answer.
pub fn describe_move(from: &str, v: &Value) -> String {
    let mut out = format!(
        "{from}: {} answered calls scheduled to move (paced)",
        num_of(v, "scheduled")
    );
    let not_answered = v.get("not_answered").and_then(Value::as_u64).unwrap_or(0);
    if not_answered > 0 {
        out.push_str(&format!("; {not_answered} not answered yet stay"));
    }
    let moving = v.get("moving").and_then(Value::as_u64).unwrap_or(0);
    if moving > 0 {
        out.push_str(&format!("; {moving} already moving"));
    }
    out.push('\n');
    if v.get("draining").and_then(Value::as_bool) == Some(false) {
        out.push_str(&format!(
            "warning: {from} is not draining: new calls still go to it (tandem drain member {from})\n"
        ));
    }
    out
}

/// Left-aligned columns, two spaces apart, with a header line.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, &w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

fn str_of(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".to_owned(),
        Some(other) => other.to_string(),
    }
}

fn num_of(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_u64)
        .map_or("-".to_owned(), |n| n.to_string())
}

/// Resumes, with the operator's moves among them.
fn resumes_of(c: &Value) -> String {
    let resumes = c.get("resumes").and_then(Value::as_u64).unwrap_or(0);
    match c.get("moves").and_then(Value::as_u64).unwrap_or(0) {
        0 => resumes.to_string(),
        moves => format!("{resumes} ({moves} moved)"),
    }
}

/// `1h02m`, `3m05s`, `42s`.
fn age(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests;
