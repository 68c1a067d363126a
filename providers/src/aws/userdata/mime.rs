//! The small part of MIME multipart that userData needs: reading the user's archive into parts
//! and writing Karpenter's archive (boundary `//`), the way Go's `net/mail` + `mime/multipart`
//! do it in Karpenter.
//!
//! Limits: lines are joined with `\n` (Go writes `\r\n` around boundaries; cloud-init and
//! nodeadm accept both), part bodies are kept as bytes-in-text (no transfer-decoding: a
//! `Content-Transfer-Encoding` header is kept with its encoded body), and nested multipart
//! parts are copied as single parts, as Karpenter does.

use super::UserDataError;

/// Karpenter's boundary.
pub const BOUNDARY: &str = "//";

/// Content type of a shell-script part.
pub const CONTENT_TYPE_SHELL_SCRIPT: &str = "text/x-shellscript; charset=\"us-ascii\"";

/// Content type of a nodeadm `NodeConfig` part.
pub const CONTENT_TYPE_NODE_CONFIG: &str = "application/node.eks.aws";

/// One part of a multipart archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// Headers with canonical names (`Content-Type`), in input order.
    pub headers: Headers,
    /// The body, without the line break that precedes the next boundary.
    pub body: String,
}

impl Part {
    /// A part with one `Content-Type` header.
    pub fn new(content_type: &str, body: impl Into<String>) -> Part {
        Part {
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }

    /// The `Content-Type` header, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == "Content-Type")
            .map(|(_, v)| v.as_str())
    }
}

/// True when `text` starts (after whitespace) with one of `prefixes`, the test Karpenter uses to
/// decide whether userData is already MIME (`MIME-Version:` for AL2; also `Content-Type:` for
/// AL2023).
pub fn starts_with_header(text: &str, prefixes: &[&str]) -> bool {
    let t = text.trim_start();
    prefixes.iter().any(|p| t.starts_with(p))
}

/// Reads a MIME multipart message into its parts. Errors say what is wrong, without the field
/// name (the caller wraps them in [`UserDataError::InvalidMime`]).
pub fn parse(text: &str) -> Result<Vec<Part>, UserDataError> {
    let err = |m: String| UserDataError::InvalidMime(m);
    let text = text.replace("\r\n", "\n");
    let text = text.trim_start_matches(['\n', ' ', '\t']);
    let (headers, body) = read_headers(text).map_err(err)?;
    let content_type = headers
        .iter()
        .find(|(k, _)| k == "Content-Type")
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| err("no Content-Type header".into()))?;
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.to_ascii_lowercase().starts_with("multipart/") {
        return Err(err(format!(
            "Content-Type is {media_type:?}, not multipart/*"
        )));
    }
    let boundary = param(content_type, "boundary")
        .filter(|b| !b.is_empty())
        .ok_or_else(|| err(format!("no boundary in Content-Type {content_type:?}")))?;
    let delimiter = format!("--{boundary}");
    let closing = format!("{delimiter}--");
    let mut parts = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    let mut closed = false;
    for line in body.split('\n') {
        let trimmed = line.trim_end_matches([' ', '\t']);
        if trimmed == delimiter || trimmed == closing {
            if let Some(lines) = current.take() {
                parts.push(read_part(&lines.join("\n")).map_err(err)?);
            }
            if trimmed == closing {
                closed = true;
                break;
            }
            current = Some(Vec::new());
        } else if let Some(lines) = current.as_mut() {
            lines.push(line);
        }
    }
    if !closed {
        return Err(err(format!("no closing boundary {closing:?}")));
    }
    Ok(parts)
}

/// Writes `parts` as Karpenter's archive: `MIME-Version`, `Content-Type: multipart/mixed;
/// boundary="//"`, then each part with its headers sorted by name (Go's `CreatePart` order).
pub fn serialize(parts: &[Part]) -> Result<String, UserDataError> {
    let delimiter = format!("--{BOUNDARY}");
    let mut out =
        format!("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\n\n");
    for (i, part) in parts.iter().enumerate() {
        // A body line equal to the boundary would end the part early on the instance.
        if part
            .body
            .split('\n')
            .any(|l| l.trim_end().starts_with(&delimiter))
        {
            return Err(UserDataError::InvalidMime(format!(
                "a part contains a line starting with the boundary {delimiter:?}"
            )));
        }
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&delimiter);
        out.push('\n');
        let mut headers = part.headers.clone();
        headers.sort_by(|a, b| a.0.cmp(&b.0));
        for (k, v) in headers {
            out.push_str(&format!("{k}: {v}\n"));
        }
        out.push('\n');
        out.push_str(&part.body);
    }
    if !parts.is_empty() {
        out.push('\n');
    }
    out.push_str(&format!("{delimiter}--\n"));
    Ok(out)
}

/// Header name/value pairs, names canonical.
type Headers = Vec<(String, String)>;

/// Headers (canonical names) and the rest of an entity.
fn read_headers(text: &str) -> Result<(Headers, &str), String> {
    let mut headers: Headers = Vec::new();
    let mut rest = text;
    loop {
        let (line, after) = match rest.split_once('\n') {
            Some((l, a)) => (l, a),
            None => (rest, ""),
        };
        if line.is_empty() {
            return Ok((headers, after));
        }
        if line.starts_with([' ', '\t']) {
            let Some(last) = headers.last_mut() else {
                return Err(format!("malformed header line {line:?}"));
            };
            last.1.push(' ');
            last.1.push_str(line.trim());
        } else {
            let Some((name, value)) = line.split_once(':') else {
                return Err(format!("malformed header line {line:?}"));
            };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!("malformed header line {line:?}"));
            }
            headers.push((canonical_header(name), value.trim().to_string()));
        }
        if after.is_empty() && !rest.contains('\n') {
            // Headers without a body.
            return Ok((headers, ""));
        }
        rest = after;
    }
}

fn read_part(text: &str) -> Result<Part, String> {
    let (headers, body) = read_headers(text)?;
    Ok(Part {
        headers,
        body: body.to_string(),
    })
}

/// Go's `CanonicalMIMEHeaderKey`: `content-type` → `Content-Type`.
fn canonical_header(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
        upper = c == '-';
    }
    out
}

/// A parameter of a header value: `multipart/mixed; boundary="//"` → `//`.
fn param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_parts_and_round_trips() {
        let text = "MIME-Version: 1.0\r\ncontent-type: multipart/mixed; boundary=\"B\"\r\n\r\n\
                    preamble\r\n--B\r\ncontent-type: text/x-shellscript\r\n\r\necho a\r\n\r\n\
                    --B\r\nContent-Type: text/cloud-config\r\n\r\nruncmd: []\r\n--B--\r\n";
        let parts = parse(text).unwrap();
        assert_eq!(
            parts,
            vec![
                Part::new("text/x-shellscript", "echo a\n"),
                Part::new("text/cloud-config", "runcmd: []"),
            ]
        );
        let out = serialize(&parts).unwrap();
        assert_eq!(
            out,
            "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"//\"\n\n\
             --//\nContent-Type: text/x-shellscript\n\necho a\n\n\
             --//\nContent-Type: text/cloud-config\n\nruncmd: []\n--//--\n"
        );
        assert_eq!(parse(&out).unwrap(), parts);
    }

    #[test]
    fn headers_are_sorted_and_folded_lines_joined() {
        let text = "Content-Type: multipart/mixed;\n boundary=xyz\n\n--xyz\n\
                    x-b: 2\ncontent-transfer-encoding: base64\nContent-Type: text/plain\n\n\
                    ZWNobw==\n--xyz--\n";
        let parts = parse(text).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].content_type(), Some("text/plain"));
        let out = serialize(&parts).unwrap();
        assert!(
            out.contains(
                "--//\nContent-Transfer-Encoding: base64\nContent-Type: text/plain\nX-B: 2\n\n\
                 ZWNobw==\n--//--\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let msg = |t: &str| parse(t).unwrap_err().to_string();
        assert_eq!(
            msg("MIME-Version: 1.0\n\n"),
            "spec.userData: not valid MIME multipart: no Content-Type header"
        );
        assert_eq!(
            msg("Content-Type: text/x-shellscript\n\necho"),
            "spec.userData: not valid MIME multipart: Content-Type is \"text/x-shellscript\", \
             not multipart/*"
        );
        assert!(msg("Content-Type: multipart/mixed\n\n").contains("no boundary"));
        assert!(
            msg("Content-Type: multipart/mixed; boundary=B\n\n--B\n\necho\n")
                .contains("no closing boundary \"--B--\"")
        );
        assert!(
            msg("Content-Type: multipart/mixed; boundary=B\n\n--B\n#!/bin/bash\n--B--\n")
                .contains("malformed header line \"#!/bin/bash\"")
        );
        assert!(msg("MIME-Version 1.0\n").contains("malformed header line"));
    }

    #[test]
    fn refuses_a_body_that_would_end_the_part() {
        let err = serialize(&[Part::new("text/plain", "a\n--//\nb")]).unwrap_err();
        assert!(err.to_string().contains("boundary"), "{err}");
    }

    #[test]
    fn detects_mime_like_karpenter() {
        assert!(starts_with_header(
            "\n  MIME-Version: 1.0\n",
            &["MIME-Version:"]
        ));
        assert!(!starts_with_header("#!/bin/bash\n", &["MIME-Version:"]));
        assert!(starts_with_header(
            "Content-Type: multipart/mixed",
            &["MIME-Version:", "Content-Type:"]
        ));
    }
}
