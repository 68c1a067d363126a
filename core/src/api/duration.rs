//! Go-style durations as they appear in Karpenter manifests (`"720h"`, `"30s"`, `"Never"`).
//!
//! Both types keep the string exactly as written so that a manifest round-trips byte for byte;
//! parsing happens on demand. Parsing accepts everything Go's `time.ParseDuration` accepts
//! (`"1.5h"`, `"300ms"`), like Karpenter's JSON unmarshaller does; the stricter shapes that
//! Karpenter's CRD patterns enforce (`^([0-9]+(s|m|h))+$`) are checked in
//! [`crate::api::validation`].

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The literal Karpenter uses to disable a [`NillableDuration`].
pub const NEVER: &str = "Never";

/// Why a duration string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string was empty.
    #[error("invalid duration \"\": empty string")]
    Empty,
    /// The string is not of the form `[-+]?([0-9]*(\.[0-9]*)?[a-zµμ]+)+`.
    #[error("invalid duration {0:?}")]
    Invalid(String),
    /// A number was not followed by a unit (Go accepts a bare `"0"` only).
    #[error("missing unit in duration {0:?}")]
    MissingUnit(String),
    /// The unit is not one of `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`.
    #[error("unknown unit {unit:?} in duration {input:?}")]
    UnknownUnit {
        /// The offending unit.
        unit: String,
        /// The whole input.
        input: String,
    },
    /// The value exceeds Go's `time.Duration` range (about 292 years).
    #[error("duration {0:?} out of range")]
    Overflow(String),
    /// Negative durations are valid Go but meaningless for every Karpenter field.
    #[error("duration {0:?} is negative")]
    Negative(String),
}

/// Parses a Go duration string (`time.ParseDuration` syntax) into a [`Duration`].
///
/// Accepts a sequence of decimal numbers with optional fraction and a unit each, e.g. `"720h"`,
/// `"1h30m"`, `"1.5h"`, `"300ms"`, and the bare `"0"`. A leading `+` is allowed; a leading `-`
/// is accepted only when the value is zero since [`Duration`] cannot be negative.
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    const MAX_NANOS: u128 = i64::MAX as u128; // Go's time.Duration is an int64 of nanoseconds.
    let invalid = || DurationError::Invalid(input.to_string());
    let mut s = input;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(if input.is_empty() {
            DurationError::Empty
        } else {
            invalid()
        });
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, rest) = s.split_at(int_len);
        let (frac_part, rest) = match rest.strip_prefix('.') {
            Some(after_dot) => {
                let n = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                after_dot.split_at(n)
            }
            None => ("", rest),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (unit, rest) = rest.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::MissingUnit(input.to_string()));
        }
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            _ => {
                return Err(DurationError::UnknownUnit {
                    unit: unit.to_string(),
                    input: input.to_string(),
                });
            }
        };
        let overflow = || DurationError::Overflow(input.to_string());
        let mut value: u128 = 0;
        for d in int_part.bytes() {
            value = value * 10 + u128::from(d - b'0');
            if value > MAX_NANOS {
                return Err(overflow());
            }
        }
        let mut nanos = value.checked_mul(unit_nanos).ok_or_else(overflow)?;
        // Fractions beyond nanosecond precision cannot matter; Go truncates them too.
        let mut scale: u128 = 1;
        let mut frac: u128 = 0;
        for d in frac_part.bytes().take(20) {
            frac = frac * 10 + u128::from(d - b'0');
            scale *= 10;
        }
        nanos += frac * unit_nanos / scale;
        total = total
            .checked_add(nanos)
            .filter(|t| *t <= MAX_NANOS)
            .ok_or_else(overflow)?;
        s = rest;
    }
    if negative && total > 0 {
        return Err(DurationError::Negative(input.to_string()));
    }
    let secs = (total / 1_000_000_000) as u64;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// Formats a [`Duration`] the way Go's `time.Duration.String()` does (`"720h0m0s"`, `"1.5s"`,
/// `"300ms"`, `"0s"`), which is what Karpenter writes back when it re-marshals a duration.
pub fn format_go_duration(d: Duration) -> String {
    fn trimmed_fraction(whole: u128, frac: u128, digits: usize) -> String {
        if frac == 0 {
            return whole.to_string();
        }
        let f = format!("{frac:0digits$}");
        format!("{whole}.{}", f.trim_end_matches('0'))
    }
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", trimmed_fraction(nanos / 1_000, nanos % 1_000, 3));
    }
    if nanos < 1_000_000_000 {
        return format!(
            "{}ms",
            trimmed_fraction(nanos / 1_000_000, nanos % 1_000_000, 6)
        );
    }
    let total_secs = nanos / 1_000_000_000;
    let sub = nanos % 1_000_000_000;
    let (h, m, s) = (total_secs / 3600, (total_secs / 60) % 60, total_secs % 60);
    let secs = format!("{}s", trimmed_fraction(s, sub, 9));
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

/// A plain Go duration string (`metav1.Duration` in Karpenter), e.g. `terminationGracePeriod`
/// or a budget's `duration`. Serialized as the string exactly as written.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GoDuration(pub String);

impl GoDuration {
    /// Wraps a string without checking it; use [`GoDuration::parse`] to check.
    pub fn new(s: impl Into<String>) -> Self {
        GoDuration(s.into())
    }

    /// Formats `d` in Go's canonical form (`"48h0m0s"`).
    pub fn from_duration(d: Duration) -> Self {
        GoDuration(format_go_duration(d))
    }

    /// The string as written in the manifest.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses the string with [`parse_go_duration`].
    pub fn parse(&self) -> Result<Duration, DurationError> {
        parse_go_duration(&self.0)
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for GoDuration {
    fn schema_name() -> Cow<'static, str> {
        "GoDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string" })
    }
}

/// A Go duration string or the literal `"Never"` (Karpenter's `NillableDuration`), used by
/// `expireAfter` and `consolidateAfter`. Serialized as the string exactly as written.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NillableDuration(pub String);

impl NillableDuration {
    /// Wraps a string without checking it; use [`NillableDuration::parse`] to check.
    pub fn new(s: impl Into<String>) -> Self {
        NillableDuration(s.into())
    }

    /// The disabled value, `"Never"`.
    pub fn never() -> Self {
        NillableDuration(NEVER.to_string())
    }

    /// Formats `d` in Go's canonical form (`"720h0m0s"`).
    pub fn from_duration(d: Duration) -> Self {
        NillableDuration(format_go_duration(d))
    }

    /// True for `"Never"`.
    pub fn is_never(&self) -> bool {
        self.0 == NEVER
    }

    /// The string as written in the manifest.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `Ok(None)` for `"Never"`, otherwise the parsed duration.
    pub fn parse(&self) -> Result<Option<Duration>, DurationError> {
        if self.is_never() {
            Ok(None)
        } else {
            parse_go_duration(&self.0).map(Some)
        }
    }
}

impl fmt::Display for NillableDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for NillableDuration {
    fn schema_name() -> Cow<'static, str> {
        "NillableDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // Same pattern as Karpenter's CRD for expireAfter / consolidateAfter.
        json_schema!({ "type": "string", "pattern": "^(([0-9]+(s|m|h))+|Never)$" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn parses_go_syntax() {
        let cases = [
            ("720h", secs(720 * 3600)),
            ("30s", secs(30)),
            ("1h30m", secs(5400)),
            ("0s", Duration::ZERO),
            ("0", Duration::ZERO),
            ("-0s", Duration::ZERO),
            ("+5m", secs(300)),
            ("1.5h", secs(5400)),
            ("300ms", Duration::from_millis(300)),
            ("1m30.5s", Duration::from_millis(90_500)),
            (".5s", Duration::from_millis(500)),
            ("1.s", secs(1)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("1h0m0s", secs(3600)),
            ("2562047h", secs(2_562_047 * 3600)),
        ];
        for (input, want) in cases {
            assert_eq!(parse_go_duration(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn rejects_bad_durations() {
        assert_eq!(parse_go_duration(""), Err(DurationError::Empty));
        assert!(matches!(
            parse_go_duration("-"),
            Err(DurationError::Invalid(_))
        ));
        assert!(matches!(
            parse_go_duration("h"),
            Err(DurationError::Invalid(_))
        ));
        assert!(matches!(
            parse_go_duration("."),
            Err(DurationError::Invalid(_))
        ));
        assert!(matches!(
            parse_go_duration("10"),
            Err(DurationError::MissingUnit(_))
        ));
        assert!(matches!(
            parse_go_duration("1h30"),
            Err(DurationError::MissingUnit(_))
        ));
        assert!(matches!(
            parse_go_duration("3d"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_go_duration("Never"),
            Err(DurationError::Invalid(_))
        ));
        assert!(matches!(
            parse_go_duration("-5s"),
            Err(DurationError::Negative(_))
        ));
        assert!(matches!(
            parse_go_duration("9999999999h"),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            parse_go_duration("2562048h"),
            Err(DurationError::Overflow(_))
        ));
        let err = parse_go_duration("3d").unwrap_err().to_string();
        assert_eq!(err, "unknown unit \"d\" in duration \"3d\"");
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_go_duration(Duration::ZERO), "0s");
        assert_eq!(format_go_duration(secs(720 * 3600)), "720h0m0s");
        assert_eq!(format_go_duration(secs(90)), "1m30s");
        assert_eq!(format_go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_go_duration(Duration::from_millis(300)), "300ms");
        assert_eq!(format_go_duration(Duration::from_nanos(1500)), "1.5µs");
        assert_eq!(format_go_duration(Duration::from_nanos(12)), "12ns");
        for s in ["720h0m0s", "1m30s", "1.5s", "300ms", "1.5µs", "12ns"] {
            let d = parse_go_duration(s).unwrap();
            assert_eq!(format_go_duration(d), s);
        }
    }

    #[test]
    fn nillable_duration_never_and_round_trip() {
        let never: NillableDuration = serde_json::from_str("\"Never\"").unwrap();
        assert!(never.is_never());
        assert_eq!(never.parse(), Ok(None));
        assert_eq!(never, NillableDuration::never());
        let d: NillableDuration = serde_json::from_str("\"1h30m\"").unwrap();
        assert_eq!(d.parse(), Ok(Some(secs(5400))));
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"1h30m\"");
        assert_eq!(NillableDuration::from_duration(secs(0)).as_str(), "0s");
        assert!(NillableDuration::new("never").parse().is_err());
        let g = GoDuration::new("48h");
        assert_eq!(g.parse(), Ok(secs(48 * 3600)));
        assert_eq!(GoDuration::from_duration(secs(3600)).to_string(), "1h0m0s");
    }

    #[test]
    fn schemas_are_strings() {
        let s = schemars::schema_for!(NillableDuration);
        assert_eq!(s.get("type").and_then(|t| t.as_str()), Some("string"));
        let s = schemars::schema_for!(GoDuration);
        assert_eq!(s.get("type").and_then(|t| t.as_str()), Some("string"));
    }
}
