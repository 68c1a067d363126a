//! What a node's userData tells its kubelet: extra labels, register-with taints and `maxPods`.
//!
//! Understood forms (all possibly base64-encoded and wrapped in MIME multipart, whose parts may
//! themselves be base64):
//!
//! - AL2: a shell script calling `/etc/eks/bootstrap.sh … --kubelet-extra-args '--node-labels=…
//!   --register-with-taints=… --max-pods=N'` (also `--use-max-pods false`, and kubelet flags given
//!   anywhere in the script, e.g. in `KUBELET_EXTRA_ARGS="…"`);
//! - AL2023: a nodeadm `NodeConfig` YAML (`spec.kubelet.config.maxPods`, `spec.kubelet.flags`
//!   as a block list of strings);
//! - Bottlerocket: TOML with `settings.kubernetes.max-pods`, `settings.kubernetes.node-labels`
//!   and `settings.kubernetes.node-taints` (`"key" = "value:Effect"` or a list of those).
//!
//! Anything else is skipped and noted in [`KubeletSettings::problems`]; parsing never fails.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Taint;

/// The OS family the userData looks like, which decides a few kubelet defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AmiFamily {
    /// Amazon Linux 2 (`bootstrap.sh`).
    Al2,
    /// Amazon Linux 2023 (nodeadm `NodeConfig`).
    Al2023,
    /// Bottlerocket (TOML settings).
    Bottlerocket,
    /// No recognisable bootstrap (no or custom userData); treated like AL2.
    #[default]
    Unknown,
}

impl AmiFamily {
    /// The `osImage` a kubelet on this family reports.
    pub fn os_image(self) -> &'static str {
        match self {
            AmiFamily::Al2 | AmiFamily::Unknown => "Amazon Linux 2",
            AmiFamily::Al2023 => "Amazon Linux 2023",
            AmiFamily::Bottlerocket => "Bottlerocket OS 1.20.0 (aws-k8s-1.20)",
        }
    }
}

/// Kubelet settings gathered from userData.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KubeletSettings {
    /// The family the bootstrap format belongs to.
    pub family: AmiFamily,
    /// `--max-pods` / `maxPods` / `max-pods`, when given.
    pub max_pods: Option<u32>,
    /// AL2 `bootstrap.sh --use-max-pods false`: the kubelet then keeps its own default (110)
    /// unless `--max-pods` is passed.
    pub use_max_pods: Option<bool>,
    /// `--node-labels` / `node-labels`.
    pub labels: BTreeMap<String, String>,
    /// `--register-with-taints` / `node-taints`.
    pub taints: Vec<Taint>,
    /// What was skipped and why (for logs).
    pub problems: Vec<String>,
}

/// Parses base64 userData as EC2 returns it. Undecodable data gives default settings with a
/// problem noted.
pub fn parse_base64(user_data: &str) -> KubeletSettings {
    match decode_base64(user_data) {
        Ok(bytes) => parse(&String::from_utf8_lossy(&bytes)),
        Err(e) => KubeletSettings {
            problems: vec![format!("userData is not base64: {e}")],
            ..KubeletSettings::default()
        },
    }
}

/// Parses decoded userData (MIME multipart or a single document).
pub fn parse(text: &str) -> KubeletSettings {
    let mut out = KubeletSettings::default();
    let text = text.replace("\r\n", "\n");
    for (content_type, body) in mime_parts(&text, 0, &mut out.problems) {
        parse_document(&content_type, &body, &mut out);
    }
    out
}

const MAX_MIME_DEPTH: usize = 4;

/// Splits a MIME multipart message into (content type, decoded body); a non-MIME text is one
/// part with an empty content type.
fn mime_parts(text: &str, depth: usize, problems: &mut Vec<String>) -> Vec<(String, String)> {
    let Some((headers, body)) = split_headers(text) else {
        return vec![(String::new(), text.to_string())];
    };
    let content_type = header(&headers, "content-type").unwrap_or_default();
    let body = if header(&headers, "content-transfer-encoding")
        .is_some_and(|e| e.trim().eq_ignore_ascii_case("base64"))
    {
        match decode_base64(&body) {
            Ok(b) => String::from_utf8_lossy(&b).replace("\r\n", "\n"),
            Err(e) => {
                problems.push(format!("MIME part is not base64: {e}"));
                return Vec::new();
            }
        }
    } else {
        body
    };
    let lower = content_type.to_ascii_lowercase();
    if !lower.starts_with("multipart/") {
        return vec![(lower, body)];
    }
    let Some(boundary) = mime_param(&content_type, "boundary") else {
        problems.push(format!("multipart without boundary: {content_type}"));
        return Vec::new();
    };
    if depth >= MAX_MIME_DEPTH {
        problems.push("MIME nesting too deep".into());
        return Vec::new();
    }
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in body.lines() {
        let trimmed = line.trim_end();
        if trimmed == delimiter || trimmed == format!("{delimiter}--") {
            if let Some(lines) = current.take() {
                parts.extend(mime_parts(&lines.join("\n"), depth + 1, problems));
            }
            if trimmed != delimiter {
                break;
            }
            current = Some(Vec::new());
        } else if let Some(lines) = current.as_mut() {
            lines.push(line);
        }
    }
    if let Some(lines) = current {
        parts.extend(mime_parts(&lines.join("\n"), depth + 1, problems));
    }
    parts
}

/// Headers (lower-cased names) and body of a MIME entity, or `None` when `text` does not start
/// with headers.
fn split_headers(text: &str) -> Option<(Vec<(String, String)>, String)> {
    let (head, body) = match text.split_once("\n\n") {
        Some((h, b)) => (h, b),
        None => (text, ""),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            // Folded header continuation.
            headers.last_mut()?.1.push_str(line.trim());
            continue;
        }
        let (name, value) = line.split_once(':')?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return None;
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let is_mime = headers
        .iter()
        .any(|(n, _)| n == "content-type" || n == "mime-version");
    is_mime.then(|| (headers, body.to_string()))
}

fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

/// A parameter of a header value: `multipart/mixed; boundary="//"` → `//`.
fn mime_param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

fn parse_document(content_type: &str, body: &str, out: &mut KubeletSettings) {
    let looks_nodeadm = content_type.contains("node.eks.aws")
        || body.contains("node.eks.aws/")
        || body.lines().any(|l| l.trim() == "kind: NodeConfig");
    if looks_nodeadm {
        out.family = AmiFamily::Al2023;
        parse_nodeadm(body, out);
    } else if body
        .lines()
        .any(|l| l.trim_start().starts_with("[settings"))
    {
        out.family = AmiFamily::Bottlerocket;
        parse_bottlerocket(body, out);
    } else {
        if body.contains("/etc/eks/bootstrap.sh") && out.family == AmiFamily::Unknown {
            out.family = AmiFamily::Al2;
        }
        collect_flags(&shell_words(body), out, 0);
    }
}

/// nodeadm `NodeConfig`: `maxPods: N` and block-list items that are kubelet flags.
fn parse_nodeadm(body: &str, out: &mut KubeletSettings) {
    for line in body.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("maxPods:") {
            set_max_pods(out, v.trim().trim_matches(['"', '\'']));
        } else if let Some(item) = line.strip_prefix("- ") {
            let words = shell_words(item);
            if words.first().is_some_and(|w| w.starts_with("--")) {
                collect_flags(&words, out, 0);
            }
        }
    }
}

/// Bottlerocket TOML, line by line: tables, `key = value` with quoted or dotted keys, integer,
/// string and string-array values.
fn parse_bottlerocket(body: &str, out: &mut KubeletSettings) {
    let mut table: Vec<String> = Vec::new();
    for raw in body.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            let inner = line.trim_start_matches('[').trim_end_matches(']');
            table = toml_key_path(inner);
            continue;
        }
        let Some((key, value)) = split_toml_assignment(line) else {
            out.problems
                .push(format!("unreadable Bottlerocket line: {line}"));
            continue;
        };
        let mut path = table.clone();
        path.extend(toml_key_path(key));
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        match path.as_slice() {
            ["settings", "kubernetes", "max-pods"] => set_max_pods(out, value.trim_matches('"')),
            ["settings", "kubernetes", "node-labels", label] => {
                if let Some(v) = toml_strings(value).into_iter().next() {
                    out.labels.insert((*label).to_string(), v);
                }
            }
            ["settings", "kubernetes", "node-taints", key] => {
                for v in toml_strings(value) {
                    // `value:Effect` (or `:Effect`) for this key.
                    match parse_taint(&format!("{key}={v}")) {
                        Some(t) => out.taints.push(t),
                        None => out
                            .problems
                            .push(format!("bad Bottlerocket taint {key} = {v}")),
                    }
                }
            }
            _ => {}
        }
    }
}

/// Splits `key = value` at the first `=` outside quotes.
fn split_toml_assignment(line: &str) -> Option<(&str, &str)> {
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

/// `settings."a.b".c` → [`settings`, `a.b`, `c`].
fn toml_key_path(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    for c in key.chars() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '.') => out.push(std::mem::take(&mut cur).trim().to_string()),
            _ => cur.push(c),
        }
    }
    out.push(cur.trim().to_string());
    out
}

/// The strings of a TOML value: `"x"` → [x]; `["a", "b"]` → [a, b]; a bare value as is.
fn toml_strings(value: &str) -> Vec<String> {
    let value = value.trim();
    let inner = match value.strip_prefix('[') {
        Some(rest) => rest.trim_end().trim_end_matches(']'),
        None => value,
    };
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    for c in inner.chars() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ',') => out.push(std::mem::take(&mut cur)),
            (None, '#') => break,
            (None, c) if c.is_whitespace() => {}
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn set_max_pods(out: &mut KubeletSettings, value: &str) {
    match value.trim().parse::<u32>() {
        Ok(n) => out.max_pods = Some(n),
        Err(_) => out.problems.push(format!("bad max pods value {value:?}")),
    }
}

const MAX_FLAG_DEPTH: usize = 4;

/// Picks kubelet flags out of shell words. Quoted words that hold several words (e.g. the
/// argument of `--kubelet-extra-args`, `KUBELET_EXTRA_ARGS="…"`) are split and searched too.
fn collect_flags(words: &[String], out: &mut KubeletSettings, depth: usize) {
    let mut i = 0;
    while i < words.len() {
        let word = words[i].as_str();
        // `NAME=--flag=…` (an environment assignment holding a flag).
        let word = match word.split_once("=--") {
            Some((name, _)) if !name.starts_with('-') && !name.contains(char::is_whitespace) => {
                &word[name.len() + 1..]
            }
            _ => word,
        };
        // A quoted word holding several words: search its words.
        if word.contains(char::is_whitespace) {
            if depth < MAX_FLAG_DEPTH {
                collect_flags(&shell_words(word), out, depth + 1);
            }
            i += 1;
            continue;
        }
        let Some(flag) = word.strip_prefix("--") else {
            i += 1;
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        let wants_value = matches!(
            name,
            "node-labels"
                | "register-with-taints"
                | "max-pods"
                | "use-max-pods"
                | "kubelet-extra-args"
        );
        let value = match inline {
            Some(v) => Some(v),
            None if wants_value && i + 1 < words.len() => {
                i += 1;
                Some(words[i].clone())
            }
            None => None,
        };
        let value = value.map(|v| v.trim().trim_matches(['"', '\'']).to_string());
        match (name, value) {
            ("node-labels", Some(v)) => parse_labels(&v, out),
            ("register-with-taints", Some(v)) => {
                for t in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    match parse_taint(t) {
                        Some(taint) => out.taints.push(taint),
                        None => out.problems.push(format!("bad taint {t:?}")),
                    }
                }
            }
            ("max-pods", Some(v)) => set_max_pods(out, &v),
            ("use-max-pods", Some(v)) => out.use_max_pods = Some(v != "false"),
            ("kubelet-extra-args", Some(v)) if depth < MAX_FLAG_DEPTH => {
                collect_flags(&shell_words(&v), out, depth + 1)
            }
            _ => {}
        }
        i += 1;
    }
}

fn parse_labels(value: &str, out: &mut KubeletSettings) {
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.labels.insert(k.to_string(), v.to_string());
            }
            _ => out.problems.push(format!("bad node label {pair:?}")),
        }
    }
}

/// `key=value:Effect` or `key:Effect` (kubelet's `--register-with-taints` syntax).
pub fn parse_taint(spec: &str) -> Option<Taint> {
    let (kv, effect) = spec.rsplit_once(':')?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return None;
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, (!v.is_empty()).then(|| v.to_string())),
        None => (kv, None),
    };
    (!key.is_empty()).then(|| Taint {
        key: key.to_string(),
        value,
        effect: effect.to_string(),
        time_added: None,
    })
}

/// Splits shell text into words the way `sh` would for simple commands: single quotes are
/// literal, double quotes honour `\"`, `\\`, `\$` and `` \` ``, backslash-newline joins lines, `#`
/// at the start of a word comments out the rest of the line. Operators are not special.
pub fn shell_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(n) => {
                    cur.push(n);
                    in_word = true;
                }
            },
            '\'' => {
                in_word = true;
                for n in chars.by_ref() {
                    if n == '\'' {
                        break;
                    }
                    cur.push(n);
                }
            }
            '"' => {
                in_word = true;
                while let Some(n) = chars.next() {
                    match n {
                        '"' => break,
                        '\\' => match chars.peek() {
                            Some(&e @ ('"' | '\\' | '$' | '`')) => {
                                cur.push(e);
                                chars.next();
                            }
                            Some('\n') => {
                                chars.next();
                            }
                            _ => cur.push('\\'),
                        },
                        _ => cur.push(n),
                    }
                }
            }
            '#' if !in_word => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Standard base64 with padding (how EC2 wants userData).
pub fn encode_base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes standard or URL-safe base64, ignoring whitespace; padding is optional.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let cleaned: String = text
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    LENIENT.decode(cleaned).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
