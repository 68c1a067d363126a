//! The plan as text: what `karpenter simulate` prints after the provisioning plan.

use std::fmt::Write as _;

use super::command::{Command, Destination, Disrupted, Plan};
use super::consolidation::Replacement;

/// Dollars per hour with four decimals, never `-0.0000`.
fn usd(v: f64) -> String {
    let v = if v.abs() < 0.000_05 { 0.0 } else { v };
    format!("${v:.4}/h")
}

fn node(d: &Disrupted) -> String {
    let mut facts = Vec::new();
    if let Some(t) = &d.instance_type {
        facts.push(t.clone());
    }
    if let Some(c) = &d.capacity_type {
        facts.push(c.clone());
    }
    if let Some(z) = &d.zone {
        facts.push(z.clone());
    }
    let price = d.price.map_or("price unknown".to_owned(), usd);
    format!("{} ({}, {}, {price})", d.node, d.node_pool, facts.join(" "))
}

fn replacement(r: &Replacement, max_types: usize) -> String {
    let mut names: Vec<&str> = r
        .instance_types
        .iter()
        .take(max_types)
        .map(|o| o.name.as_str())
        .collect();
    let more = r.instance_types.len().saturating_sub(max_types);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    if names.is_empty() {
        names.push("<none>");
    }
    let mut pins = Vec::new();
    if let Some(c) = &r.capacity_type {
        pins.push(c.clone());
    }
    if let Some(z) = &r.zone {
        pins.push(z.clone());
    }
    let pins = if pins.is_empty() {
        String::new()
    } else {
        format!(", {}", pins.join(" "))
    };
    format!(
        "NodePool {}: {}{more}{pins}, from {}",
        r.node_pool,
        names.join(", "),
        usd(r.price)
    )
}

fn command(out: &mut String, i: usize, c: &Command) {
    let verb = c.action.as_str();
    let _ = writeln!(
        out,
        "{}. {} ({}): {verb} {}; saves {} ({} → {})",
        i + 1,
        c.method.as_str(),
        c.reason()
            .map_or("forceful".to_owned(), |r| format!("{r:?}")),
        if c.candidates.len() == 1 {
            "1 node".to_owned()
        } else {
            format!("{} nodes", c.candidates.len())
        },
        usd(c.savings_per_hour()),
        usd(c.price_before),
        usd(c.price_after),
    );
    for d in &c.candidates {
        let _ = writeln!(out, "   - {}", node(d));
    }
    for (j, r) in c.replacements.iter().enumerate() {
        let _ = writeln!(out, "   + replacement {}: {}", j + 1, replacement(r, 5));
    }
    for m in &c.moves {
        let to = match &m.to {
            Destination::Node(n) => n.clone(),
            Destination::Replacement(j) => format!("replacement {}", j + 1),
        };
        let _ = writeln!(out, "     {} : {} → {to}", m.pod, m.from);
    }
}

/// Renders `plan`: each command with its savings, nodes, replacements and pod moves, then each
/// kept node with its reasons.
pub fn render_text(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "disruption: {} command(s), saving {}; {} node(s) kept",
        plan.commands.len(),
        usd(plan.savings_per_hour()),
        plan.kept.len()
    );
    for (i, c) in plan.commands.iter().enumerate() {
        command(&mut out, i, c);
    }
    if !plan.kept.is_empty() {
        let _ = writeln!(out, "kept:");
    }
    for k in &plan.kept {
        let _ = writeln!(out, "  {} (NodePool {}):", k.node, k.node_pool);
        for r in &k.reasons {
            let _ = writeln!(out, "    - [{}] {r}", r.kind());
        }
    }
    out
}
