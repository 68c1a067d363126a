//! Bottlerocket: the user's TOML settings with Karpenter's `settings.kubernetes` keys merged
//! over them (Karpenter's `Bottlerocket.Script`).
//!
//! What Karpenter sets, and so wins over the user: `cluster-name`, `api-server`,
//! `cluster-certificate`; `node-labels` (merged key by key, Karpenter's labels override);
//! `node-taints` (replaced wholesale by the node's taints); and, when set in the kubelet
//! settings, `max-pods`, `cluster-dns-ip`, `system-reserved`, `kube-reserved`, `eviction-hard`
//! (each map replaced), `image-gc-high-threshold-percent`, `image-gc-low-threshold-percent`
//! (as strings) and `cpu-cfs-quota`. `podsPerCore` and the soft-eviction settings are ignored,
//! as Karpenter ignores them for Bottlerocket. Every other user key is kept.
//!
//! There is no TOML crate in the workspace, so this is a minimal, line-based reader:
//! - everything outside `settings.kubernetes` is copied verbatim (comments included), so any
//!   TOML there is fine;
//! - inside `settings.kubernetes` it understands `[tables]`, dotted and quoted keys, values
//!   spanning lines (arrays, multi-line strings) and inline tables (`{ a = "b" }`, flattened
//!   into sub-tables); values are kept as written, comments there are dropped;
//! - it refuses `[[arrays of tables]]` inside `settings.kubernetes` and inline tables that
//!   define `settings` or `settings.kubernetes` from above (`settings = { … }`).
//!
//! The output puts the user's root keys first, then `[settings.kubernetes]` and its sub-tables
//! (keys sorted), then the user's other tables in their order.

use std::collections::BTreeMap;

use super::{
    UserDataError, UserDataInput, check_labels_and_taints, kubelet_labels, register_taints,
};

const KUBERNETES: [&str; 2] = ["settings", "kubernetes"];

/// Renders the Bottlerocket TOML.
pub fn render(input: &UserDataInput) -> Result<String, UserDataError> {
    check_labels_and_taints(input)?;
    let mut doc = Document::parse(input.custom_user_data.as_deref().unwrap_or(""))?;
    apply_karpenter_settings(input, &mut doc.kubernetes);
    Ok(doc.emit())
}

/// The user's TOML split into what is copied and what is merged.
#[derive(Debug, Default)]
struct Document {
    /// Root-table lines (before any header), minus `settings.kubernetes` keys.
    root: Vec<String>,
    /// `settings.kubernetes` keys by path below it, with their values as written.
    kubernetes: BTreeMap<Vec<String>, String>,
    /// Other tables: header line and body lines.
    sections: Vec<(String, Vec<String>)>,
}

enum Target {
    Root,
    Section(usize),
    /// Inside a `settings.kubernetes` table: keys go to the merge.
    Kubernetes,
}

impl Document {
    fn parse(text: &str) -> Result<Document, UserDataError> {
        let mut doc = Document::default();
        let lines: Vec<&str> = text.lines().collect();
        let mut table: Vec<String> = Vec::new();
        let mut target = Target::Root;
        let mut i = 0;
        while i < lines.len() {
            let line_no = i + 1;
            let err = |reason: String| UserDataError::InvalidToml {
                line: line_no,
                reason,
            };
            let line = lines[i];
            let trimmed = line.trim();
            i += 1;
            if trimmed.is_empty() || trimmed.starts_with('#') {
                doc.push_verbatim(&target, line);
                continue;
            }
            if trimmed.starts_with('[') {
                let array = trimmed.starts_with("[[");
                let inner = header_inner(trimmed, array).map_err(err)?;
                table = key_path(inner).map_err(err)?;
                if under_kubernetes(&table) {
                    if array {
                        return Err(err(format!(
                            "arrays of tables are not supported in settings.kubernetes: \
                             {trimmed}"
                        )));
                    }
                    target = Target::Kubernetes;
                } else {
                    doc.sections.push((line.to_string(), Vec::new()));
                    target = Target::Section(doc.sections.len() - 1);
                }
                continue;
            }
            let (key, first_value) = split_assignment(line)
                .ok_or_else(|| err(format!("expected `key = value`, found {trimmed:?}")))?;
            // Gather the lines of a value that spans several (arrays, multi-line strings).
            let start = i - 1;
            let mut raw = first_value.to_string();
            let value = loop {
                match clean_value(&raw) {
                    Some(v) => break v,
                    None if i < lines.len() => {
                        raw.push('\n');
                        raw.push_str(lines[i]);
                        i += 1;
                    }
                    None => return Err(err("unterminated value".into())),
                }
            };
            let mut path = table.clone();
            path.extend(key_path(key).map_err(err)?);
            if under_kubernetes(&path) || matches!(target, Target::Kubernetes) {
                doc.insert_kubernetes(path[2..].to_vec(), &value)
                    .map_err(err)?;
            } else if KUBERNETES.starts_with(&path.iter().map(String::as_str).collect::<Vec<_>>()) {
                return Err(err(format!(
                    "inline table for {} is not supported; use [settings.kubernetes]",
                    path.join(".")
                )));
            } else {
                for l in &lines[start..i] {
                    doc.push_verbatim(&target, l);
                }
            }
        }
        check_no_table_value_clash(&doc.kubernetes).map_err(|reason| {
            UserDataError::InvalidToml {
                line: lines.len().max(1),
                reason,
            }
        })?;
        Ok(doc)
    }

    fn push_verbatim(&mut self, target: &Target, line: &str) {
        match target {
            Target::Root => self.root.push(line.to_string()),
            Target::Section(s) => self.sections[*s].1.push(line.to_string()),
            // Comments inside merged tables have nowhere stable to go.
            Target::Kubernetes => {}
        }
    }

    /// Stores a `settings.kubernetes` key, flattening inline tables.
    fn insert_kubernetes(&mut self, path: Vec<String>, value: &str) -> Result<(), String> {
        if let Some(inner) = value.strip_prefix('{') {
            let inner = inner
                .strip_suffix('}')
                .ok_or_else(|| format!("unterminated inline table {value:?}"))?;
            for item in split_top_level(inner, ',') {
                if item.trim().is_empty() {
                    continue;
                }
                let (k, v) = split_assignment(item).ok_or_else(|| {
                    format!("expected `key = value` in inline table, found {item:?}")
                })?;
                let mut p = path.clone();
                p.extend(key_path(k)?);
                self.insert_kubernetes(p, v.trim())?;
            }
            return Ok(());
        }
        if path.is_empty() {
            return Err("settings.kubernetes must be a table".into());
        }
        if self
            .kubernetes
            .insert(path.clone(), value.to_string())
            .is_some()
        {
            return Err(format!(
                "duplicate key settings.kubernetes.{}",
                path.join(".")
            ));
        }
        Ok(())
    }

    fn emit(&self) -> String {
        let mut out = String::new();
        for l in &self.root {
            out.push_str(l);
            out.push('\n');
        }
        let mut groups: BTreeMap<&[String], Vec<(&String, &String)>> = BTreeMap::new();
        for (path, value) in &self.kubernetes {
            let (key, parent) = path.split_last().expect("paths are never empty");
            groups.entry(parent).or_default().push((key, value));
        }
        for (parent, entries) in groups {
            if !out.is_empty() && !out.ends_with("\n\n") {
                out.push('\n');
            }
            let header: Vec<String> = KUBERNETES
                .iter()
                .map(|s| s.to_string())
                .chain(parent.iter().cloned())
                .map(|s| key(&s))
                .collect();
            out.push_str(&format!("[{}]\n", header.join(".")));
            for (k, v) in entries {
                out.push_str(&format!("{} = {v}\n", key(k)));
            }
        }
        for (header, lines) in &self.sections {
            if !out.ends_with("\n\n") {
                out.push('\n');
            }
            out.push_str(header);
            out.push('\n');
            for l in lines {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

/// Karpenter's overrides, applied to the `settings.kubernetes` keys.
fn apply_karpenter_settings(input: &UserDataInput, kube: &mut BTreeMap<Vec<String>, String>) {
    let k = &input.kubelet;
    set(kube, &["cluster-name"], string(&input.cluster_name));
    set(kube, &["api-server"], string(&input.cluster_endpoint));
    // Karpenter assigns the CA pointer even when nil, which drops the user's value.
    clear(kube, &["cluster-certificate"]);
    if let Some(ca) = &input.ca_bundle {
        set(kube, &["cluster-certificate"], string(ca));
    }
    if !k.cluster_dns.is_empty() {
        let ips: Vec<String> = k.cluster_dns.iter().map(|s| string(s)).collect();
        set(kube, &["cluster-dns-ip"], format!("[{}]", ips.join(", ")));
    }
    for (label, value) in kubelet_labels(&input.labels) {
        set(kube, &["node-labels", label], string(value));
    }
    if let Some(n) = k.max_pods {
        set(kube, &["max-pods"], n.to_string());
    }
    for (name, map) in [
        ("system-reserved", &k.system_reserved),
        ("kube-reserved", &k.kube_reserved),
    ] {
        if !map.is_empty() {
            clear(kube, &[name]);
            for (r, q) in map {
                set(kube, &[name, r], string(&q.0));
            }
        }
    }
    if !k.eviction_hard.is_empty() {
        clear(kube, &["eviction-hard"]);
        for (signal, v) in &k.eviction_hard {
            set(kube, &["eviction-hard", signal], string(v));
        }
    }
    if let Some(n) = k.image_gc_high_threshold_percent {
        set(
            kube,
            &["image-gc-high-threshold-percent"],
            string(&n.to_string()),
        );
    }
    if let Some(n) = k.image_gc_low_threshold_percent {
        set(
            kube,
            &["image-gc-low-threshold-percent"],
            string(&n.to_string()),
        );
    }
    if let Some(b) = k.cpu_cfs_quota {
        set(kube, &["cpu-cfs-quota"], b.to_string());
    }
    // Karpenter replaces node-taints with the node's taints: `key = ["value:Effect", …]`.
    clear(kube, &["node-taints"]);
    let mut taints: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in register_taints(input) {
        let v = format!("{}:{}", t.value.as_deref().unwrap_or(""), t.effect);
        taints.entry(t.key).or_default().push(string(&v));
    }
    for (key, values) in taints {
        set(
            kube,
            &["node-taints", &key],
            format!("[{}]", values.join(", ")),
        );
    }
}

/// Sets `path`, removing whatever would clash with it (a value at a prefix of `path`, or a
/// table at `path`).
fn set(kube: &mut BTreeMap<Vec<String>, String>, path: &[&str], value: String) {
    let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
    kube.retain(|p, _| !(path.starts_with(p) || p.starts_with(&path)));
    kube.insert(path, value);
}

/// Removes `path` and everything below it.
fn clear(kube: &mut BTreeMap<Vec<String>, String>, path: &[&str]) {
    kube.retain(|p, _| !(p.len() >= path.len() && p.iter().zip(path).all(|(a, b)| a == b)));
}

fn check_no_table_value_clash(kube: &BTreeMap<Vec<String>, String>) -> Result<(), String> {
    for p in kube.keys() {
        for n in 1..p.len() {
            if kube.contains_key(&p[..n]) {
                return Err(format!(
                    "settings.kubernetes.{} is both a value and a table",
                    p[..n].join(".")
                ));
            }
        }
    }
    Ok(())
}

fn under_kubernetes(path: &[String]) -> bool {
    path.len() >= 2 && path[0] == KUBERNETES[0] && path[1] == KUBERNETES[1]
}

/// The key path inside `[…]` or `[[…]]`, ignoring a trailing comment.
fn header_inner(line: &str, array: bool) -> Result<&str, String> {
    let open = if array { 2 } else { 1 };
    let close = if array { "]]" } else { "]" };
    let body = &line[open..];
    let mut quote = None;
    for (i, c) in body.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ']') => {
                let rest = body[i..].strip_prefix(close).map(str::trim);
                return match rest {
                    Some(r) if r.is_empty() || r.starts_with('#') => Ok(&body[..i]),
                    _ => Err(format!("malformed table header {line:?}")),
                };
            }
            _ => {}
        }
    }
    Err(format!("malformed table header {line:?}"))
}

/// `a."b.c".d` → [`a`, `b.c`, `d`].
fn key_path(key: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for seg in split_top_level(key, '.') {
        let seg = seg.trim();
        let name = if let Some(q) = seg.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            q.replace("\\\"", "\"").replace("\\\\", "\\")
        } else if let Some(q) = seg.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
            q.to_string()
        } else if !seg.is_empty()
            && seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            seg.to_string()
        } else {
            return Err(format!("invalid key {key:?}"));
        };
        out.push(name);
    }
    Ok(out)
}

/// Splits at `sep` outside quotes, brackets and braces.
fn split_top_level(text: &str, sep: char) -> Vec<&str> {
    let (mut out, mut start, mut depth, mut quote) = (Vec::new(), 0, 0i32, None);
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some('"'), '\\') if !escaped => {
                escaped = true;
                continue;
            }
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q && !escaped => quote = None,
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') => depth -= 1,
            (None, c) if c == sep && depth == 0 => {
                out.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
        escaped = false;
    }
    out.push(&text[start..]);
    out
}

/// Splits `key = value` at the first `=` outside quotes.
fn split_assignment(line: &str) -> Option<(&str, &str)> {
    let mut quote = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '=') => return Some((line[..i].trim(), line[i + 1..].trim())),
            _ => {}
        }
    }
    None
}

/// The value without comments, or `None` while it is still open (an array, inline table or
/// multi-line string continues on the next line).
fn clean_value(raw: &str) -> Option<String> {
    let chars: Vec<char> = raw.chars().collect();
    let mut out = String::new();
    let (mut i, mut depth) = (0, 0i32);
    while i < chars.len() {
        let c = chars[i];
        let triple = |q: char| {
            chars
                .get(i..i + 3)
                .is_some_and(|s| s.iter().all(|&x| x == q))
        };
        if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if (c == '"' || c == '\'') && triple(c) {
            let end = (i + 3..chars.len().saturating_sub(2))
                .find(|&j| chars[j..j + 3].iter().all(|&x| x == c) && !escaped(&chars, j, c))?;
            out.extend(&chars[i..end + 3]);
            i = end + 3;
            continue;
        }
        if c == '"' || c == '\'' {
            let end = (i + 1..chars.len())
                .find(|&j| chars[j] == c && !escaped(&chars, j, c) || chars[j] == '\n')?;
            if chars[end] == '\n' {
                return None;
            }
            out.extend(&chars[i..=end]);
            i = end + 1;
            continue;
        }
        match c {
            '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            _ => {}
        }
        out.push(c);
        i += 1;
    }
    // Comments stripped from inside a multi-line array leave trailing blanks behind.
    let lines: Vec<&str> = out.trim().lines().map(str::trim_end).collect();
    (depth == 0).then(|| lines.join("\n"))
}

/// True when the quote at `j` is escaped by an odd run of backslashes (basic strings only).
fn escaped(chars: &[char], j: usize, quote: char) -> bool {
    quote == '"' && chars[..j].iter().rev().take_while(|&&c| c == '\\').count() % 2 == 1
}

/// A TOML key segment, quoted unless bare.
fn key(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        s.to_string()
    } else {
        string(s)
    }
}

/// A TOML basic string.
fn string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
