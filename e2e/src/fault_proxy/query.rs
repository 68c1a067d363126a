//! The pure parts of the fault proxy: AWS Query form bodies, CreateFleet overrides, and the
//! error XML EC2 answers with.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// One `key=value` of a form body, percent-decoded.
pub type Pair = (String, String);
/// A form body as ordered pairs.
pub type Form = Vec<Pair>;

/// Decodes `application/x-www-form-urlencoded` (`+` is a space, `%XX` a byte).
pub fn parse_form(body: &[u8]) -> Form {
    body.split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.iter().position(|b| *b == b'=') {
            Some(eq) => (decode(&pair[..eq]), decode(&pair[eq + 1..])),
            None => (decode(pair), String::new()),
        })
        .collect()
}

fn decode(raw: &[u8]) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < raw.len() => {
                match (hex(raw[i + 1]), hex(raw[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'), // malformed escape: keep it literally
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes a form; everything but RFC 3986 unreserved characters is percent-encoded.
pub fn encode_form(form: &[Pair]) -> String {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    form.iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The first value of `key`.
pub fn get<'a>(form: &'a [Pair], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// One `LaunchTemplateConfigs.{config}.Overrides.{index}` of a CreateFleet request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetOverride {
    /// The launch template config's number (1-based, as sent).
    pub config: u32,
    /// The override's number within its config (1-based, as sent).
    pub index: u32,
    /// Its fields without the prefix, e.g. `("InstanceType", "m5.large")`, `("SubnetId", …)`.
    pub fields: Vec<(String, String)>,
}

impl FleetOverride {
    /// A field's value.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Splits `LaunchTemplateConfigs.N.rest` into `(N, rest)`.
fn config_key(key: &str) -> Option<(u32, &str)> {
    let rest = key.strip_prefix("LaunchTemplateConfigs.")?;
    let (n, rest) = rest.split_once('.')?;
    Some((n.parse().ok()?, rest))
}

/// Splits `Overrides.M.field` into `(M, field)`.
fn override_key(rest: &str) -> Option<(u32, &str)> {
    let rest = rest.strip_prefix("Overrides.")?;
    let (m, field) = rest.split_once('.')?;
    Some((m.parse().ok()?, field))
}

/// The overrides of a CreateFleet request, ordered by config and index.
pub fn fleet_overrides(form: &[Pair]) -> Vec<FleetOverride> {
    let mut by_key: BTreeMap<(u32, u32), Vec<(String, String)>> = BTreeMap::new();
    for (key, value) in form {
        if let Some((n, rest)) = config_key(key)
            && let Some((m, field)) = override_key(rest)
        {
            by_key
                .entry((n, m))
                .or_default()
                .push((field.to_owned(), value.clone()));
        }
    }
    by_key
        .into_iter()
        .map(|((config, index), fields)| FleetOverride {
            config,
            index,
            fields,
        })
        .collect()
}

/// The form without the overrides `removed` (`(config, index)` pairs), the remaining overrides of
/// each config renumbered from 1, and configs left without overrides dropped (they would launch
/// the template's own instance type instead); the remaining configs are renumbered too.
/// `None` when no override is left at all.
pub fn remove_overrides(form: &[Pair], removed: &BTreeSet<(u32, u32)>) -> Option<Form> {
    let all = fleet_overrides(form);
    // New numbers of the kept overrides, and of the configs that keep at least one.
    let mut override_numbers: BTreeMap<(u32, u32), u32> = BTreeMap::new();
    let mut configs_with_overrides: BTreeSet<u32> = BTreeSet::new();
    let mut kept_per_config: BTreeMap<u32, u32> = BTreeMap::new();
    for o in &all {
        configs_with_overrides.insert(o.config);
        if !removed.contains(&(o.config, o.index)) {
            let next = kept_per_config.entry(o.config).or_default();
            *next += 1;
            override_numbers.insert((o.config, o.index), *next);
        }
    }
    if override_numbers.is_empty() {
        return None;
    }
    let all_configs: BTreeSet<u32> = form
        .iter()
        .filter_map(|(k, _)| config_key(k))
        .map(|c| c.0)
        .collect();
    let config_numbers: BTreeMap<u32, u32> = all_configs
        .iter()
        .filter(|n| !configs_with_overrides.contains(n) || kept_per_config.contains_key(n))
        .zip(1..)
        .map(|(old, new)| (*old, new))
        .collect();
    let rewritten = form
        .iter()
        .filter_map(|(key, value)| {
            let Some((n, rest)) = config_key(key) else {
                return Some((key.clone(), value.clone()));
            };
            let new_n = config_numbers.get(&n)?;
            let rest = match override_key(rest) {
                Some((m, field)) => format!("Overrides.{}.{field}", override_numbers.get(&(n, m))?),
                None => rest.to_owned(),
            };
            Some((
                format!("LaunchTemplateConfigs.{new_n}.{rest}"),
                value.clone(),
            ))
        })
        .collect();
    Some(rewritten)
}

/// Escapes text for XML content.
pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// The text of the first `<tag>…</tag>` (exact tag name, so `availabilityZone` does not match
/// `availabilityZoneId`).
pub fn first_tag<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(&xml[start..end])
}

/// A fresh id shaped like AWS request ids (`8-4-4-4-12` hex); unique within the process.
pub fn request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let h = t ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        (h >> 32) as u32,
        (h >> 16) as u16,
        h as u16,
        n as u16,
        t & 0xffff_ffff_ffff
    )
}

/// The whole-call error document of EC2's Query API, e.g. `RequestLimitExceeded` (HTTP 503) or
/// `InsufficientInstanceCapacity` (HTTP 500).
pub fn ec2_error_xml(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code>\
         <Message>{}</Message></Error></Errors><RequestID>{}</RequestID></Response>",
        xml_escape(code),
        xml_escape(message),
        request_id()
    )
}

/// EC2's message for an InsufficientInstanceCapacity in one zone.
pub fn ice_message(instance_type: &str, zone: &str) -> String {
    format!(
        "We currently do not have sufficient {instance_type} capacity in the Availability Zone you \
         requested ({zone}). Our system will be working on provisioning additional capacity. You can \
         currently get {instance_type} capacity by not specifying an Availability Zone in your \
         request or choosing other Availability Zones."
    )
}

/// One `errorSet` item of a CreateFleet response: the override that hit ICE, with its launch
/// template (as the request named it) and its resolved zone, as EC2 reports it for instant fleets.
pub fn fleet_ice_item(form: &[Pair], o: &FleetOverride, zone: &str) -> String {
    let spec_prefix = format!(
        "LaunchTemplateConfigs.{}.LaunchTemplateSpecification.",
        o.config
    );
    let mut spec = String::new();
    for (field, tag) in [
        ("LaunchTemplateId", "launchTemplateId"),
        ("LaunchTemplateName", "launchTemplateName"),
        ("Version", "version"),
    ] {
        if let Some(v) = get(form, &format!("{spec_prefix}{field}")) {
            spec += &format!("<{tag}>{}</{tag}>", xml_escape(v));
        }
    }
    let mut overrides = String::new();
    // Simple fields only; the XML names are the request names with a lower-case first letter.
    for (field, value) in o
        .fields
        .iter()
        .filter(|(f, _)| !f.contains('.') && f != "AvailabilityZone")
    {
        let tag = lower_first(field);
        overrides += &format!("<{tag}>{}</{tag}>", xml_escape(value));
    }
    overrides += &format!("<availabilityZone>{}</availabilityZone>", xml_escape(zone));
    let lifecycle = match get(
        form,
        "TargetCapacitySpecification.DefaultTargetCapacityType",
    ) {
        Some("spot") => "spot",
        _ => "on-demand",
    };
    let instance_type = o.field("InstanceType").unwrap_or_default();
    format!(
        "<item><launchTemplateAndOverrides><launchTemplateSpecification>{spec}\
         </launchTemplateSpecification><overrides>{overrides}</overrides>\
         </launchTemplateAndOverrides><lifecycle>{lifecycle}</lifecycle>\
         <errorCode>InsufficientInstanceCapacity</errorCode><errorMessage>{}</errorMessage></item>",
        xml_escape(&ice_message(instance_type, zone))
    )
}

fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_ascii_lowercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// Adds `items` to the `errorSet` of a CreateFleet response (creating the set when moto left it out).
pub fn add_fleet_errors(xml: &str, items: &str) -> String {
    if let Some(at) = xml.find("<errorSet>") {
        let at = at + "<errorSet>".len();
        return format!("{}{items}{}", &xml[..at], &xml[at..]);
    }
    if xml.contains("<errorSet/>") {
        return xml.replacen("<errorSet/>", &format!("<errorSet>{items}</errorSet>"), 1);
    }
    match xml.rfind("</CreateFleetResponse>") {
        Some(at) => format!("{}<errorSet>{items}</errorSet>{}", &xml[..at], &xml[at..]),
        None => xml.to_owned(),
    }
}

/// The CreateFleet response of an instant fleet that launched nothing.
pub fn empty_fleet_response(items: &str) -> String {
    let id = request_id();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <CreateFleetResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
         <requestId>{}</requestId><fleetId>fleet-{id}</fleetId><errorSet>{items}</errorSet>\
         <fleetInstanceSet/></CreateFleetResponse>",
        request_id()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Form {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn form_round_trip_with_percent_encoding() {
        let parsed =
            parse_form(b"Action=CreateFleet&Version=%24Latest&A.1=a+b%2Fc&Empty=&Flag&Bad=%zz");
        assert_eq!(
            parsed,
            form(&[
                ("Action", "CreateFleet"),
                ("Version", "$Latest"),
                ("A.1", "a b/c"),
                ("Empty", ""),
                ("Flag", ""),
                ("Bad", "%zz"),
            ])
        );
        let encoded = encode_form(&parsed);
        assert!(encoded.contains("Version=%24Latest"), "{encoded}");
        assert!(encoded.contains("A.1=a%20b%2Fc"), "{encoded}");
        assert_eq!(parse_form(encoded.as_bytes()), parsed);
        assert_eq!(parse_form("k=%C3%A9".as_bytes()), form(&[("k", "é")]));
    }

    fn fleet_request() -> Form {
        form(&[
            ("Action", "CreateFleet"),
            ("Type", "instant"),
            (
                "LaunchTemplateConfigs.1.LaunchTemplateSpecification.LaunchTemplateName",
                "lt-a",
            ),
            (
                "LaunchTemplateConfigs.1.LaunchTemplateSpecification.Version",
                "$Latest",
            ),
            (
                "LaunchTemplateConfigs.1.Overrides.1.InstanceType",
                "m5.large",
            ),
            ("LaunchTemplateConfigs.1.Overrides.1.SubnetId", "subnet-a"),
            (
                "LaunchTemplateConfigs.1.Overrides.2.InstanceType",
                "m5.large",
            ),
            ("LaunchTemplateConfigs.1.Overrides.2.SubnetId", "subnet-b"),
            (
                "LaunchTemplateConfigs.1.Overrides.10.InstanceType",
                "c5.large",
            ),
            (
                "LaunchTemplateConfigs.1.Overrides.10.AvailabilityZone",
                "us-east-1c",
            ),
            (
                "LaunchTemplateConfigs.2.LaunchTemplateSpecification.LaunchTemplateId",
                "lt-123",
            ),
            (
                "LaunchTemplateConfigs.2.Overrides.1.InstanceType",
                "m6g.large",
            ),
            ("LaunchTemplateConfigs.2.Overrides.1.SubnetId", "subnet-a"),
            (
                "TargetCapacitySpecification.DefaultTargetCapacityType",
                "spot",
            ),
        ])
    }

    #[test]
    fn overrides_are_grouped_in_numeric_order() {
        let overrides = fleet_overrides(&fleet_request());
        let keys: Vec<_> = overrides.iter().map(|o| (o.config, o.index)).collect();
        assert_eq!(keys, [(1, 1), (1, 2), (1, 10), (2, 1)]);
        assert_eq!(overrides[2].field("InstanceType"), Some("c5.large"));
        assert_eq!(overrides[2].field("AvailabilityZone"), Some("us-east-1c"));
        assert_eq!(overrides[3].field("SubnetId"), Some("subnet-a"));
        assert!(fleet_overrides(&form(&[("Action", "CreateFleet")])).is_empty());
    }

    #[test]
    fn removing_overrides_renumbers_the_rest() {
        let removed = BTreeSet::from([(1, 1)]);
        let out = remove_overrides(&fleet_request(), &removed).unwrap();
        assert_eq!(
            get(&out, "LaunchTemplateConfigs.1.Overrides.1.SubnetId"),
            Some("subnet-b")
        );
        assert_eq!(
            get(&out, "LaunchTemplateConfigs.1.Overrides.2.InstanceType"),
            Some("c5.large")
        );
        assert_eq!(
            get(&out, "LaunchTemplateConfigs.1.Overrides.3.InstanceType"),
            None
        );
        assert_eq!(
            get(&out, "LaunchTemplateConfigs.2.Overrides.1.InstanceType"),
            Some("m6g.large")
        );
        assert_eq!(get(&out, "Type"), Some("instant"));
        assert_eq!(out.len(), fleet_request().len() - 2);
    }

    #[test]
    fn a_config_without_overrides_left_is_dropped_and_configs_renumbered() {
        let removed = BTreeSet::from([(1, 1), (1, 2), (1, 10)]);
        let out = remove_overrides(&fleet_request(), &removed).unwrap();
        assert_eq!(
            get(
                &out,
                "LaunchTemplateConfigs.1.LaunchTemplateSpecification.LaunchTemplateId"
            ),
            Some("lt-123")
        );
        assert_eq!(
            get(&out, "LaunchTemplateConfigs.1.Overrides.1.InstanceType"),
            Some("m6g.large")
        );
        assert!(
            !out.iter()
                .any(|(k, _)| k.starts_with("LaunchTemplateConfigs.2."))
        );
        assert!(!out.iter().any(|(_, v)| v == "lt-a"));
    }

    #[test]
    fn removing_every_override_leaves_nothing_to_forward() {
        let removed = BTreeSet::from([(1, 1), (1, 2), (1, 10), (2, 1)]);
        assert_eq!(remove_overrides(&fleet_request(), &removed), None);
    }

    #[test]
    fn ice_item_names_template_override_zone_and_lifecycle() {
        let request = fleet_request();
        let o = &fleet_overrides(&request)[0];
        let item = fleet_ice_item(&request, o, "us-east-1a");
        for part in [
            "<launchTemplateName>lt-a</launchTemplateName>",
            "<version>$Latest</version>",
            "<instanceType>m5.large</instanceType>",
            "<subnetId>subnet-a</subnetId>",
            "<availabilityZone>us-east-1a</availabilityZone>",
            "<lifecycle>spot</lifecycle>",
            "<errorCode>InsufficientInstanceCapacity</errorCode>",
            "sufficient m5.large capacity in the Availability Zone you requested (us-east-1a)",
        ] {
            assert!(item.contains(part), "{part} missing in {item}");
        }
        // An override that named its zone reports it once.
        let item = fleet_ice_item(&request, &fleet_overrides(&request)[2], "us-east-1c");
        assert_eq!(item.matches("<availabilityZone>").count(), 1, "{item}");
    }

    #[test]
    fn errors_are_added_to_moto_responses_and_empty_fleets() {
        let moto =
            "<CreateFleetResponse><fleetId>f</fleetId><fleetInstanceSet/></CreateFleetResponse>";
        assert_eq!(
            add_fleet_errors(moto, "<item>x</item>"),
            "<CreateFleetResponse><fleetId>f</fleetId><fleetInstanceSet/><errorSet><item>x</item></errorSet></CreateFleetResponse>"
        );
        let with_set =
            "<CreateFleetResponse><errorSet><item>y</item></errorSet></CreateFleetResponse>";
        assert!(
            add_fleet_errors(with_set, "<item>x</item>")
                .contains("<errorSet><item>x</item><item>y</item>")
        );
        let empty = "<CreateFleetResponse><errorSet/></CreateFleetResponse>";
        assert!(
            add_fleet_errors(empty, "<item>x</item>")
                .contains("<errorSet><item>x</item></errorSet>")
        );
        let own = empty_fleet_response("<item>x</item>");
        assert!(
            own.contains("<fleetId>fleet-") && own.contains("<fleetInstanceSet/>"),
            "{own}"
        );
        assert!(own.contains("<errorSet><item>x</item></errorSet>"), "{own}");
    }

    #[test]
    fn ec2_error_document_shape() {
        let xml = ec2_error_xml("RequestLimitExceeded", "Request limit exceeded.");
        assert!(xml.starts_with("<?xml"));
        assert_eq!(first_tag(&xml, "Code"), Some("RequestLimitExceeded"));
        assert_eq!(first_tag(&xml, "Message"), Some("Request limit exceeded."));
        assert!(first_tag(&xml, "RequestID").is_some_and(|id| id.len() == 36));
        assert!(ec2_error_xml("X", "a<b").contains("a&lt;b"));
    }

    #[test]
    fn first_tag_matches_exact_names() {
        let xml = "<availabilityZoneId>use1-az1</availabilityZoneId><availabilityZone>us-east-1b</availabilityZone>";
        assert_eq!(first_tag(xml, "availabilityZone"), Some("us-east-1b"));
        assert_eq!(first_tag(xml, "subnetId"), None);
    }

    #[test]
    fn request_ids_are_unique() {
        let ids: BTreeSet<String> = (0..100).map(|_| request_id()).collect();
        assert_eq!(ids.len(), 100);
    }
}
