//! The Prometheus text exposition format 0.0.4, which Karpenter serves (client_golang's default,
//! without OpenMetrics), from prometheus-client's OpenMetrics output.
//!
//! Serving the same format as Karpenter is what lets the 0.36 names live beside the v1 ones:
//! in OpenMetrics a counter family `karpenter_nodes_created` owns the sample
//! `karpenter_nodes_created_total`, so 0.36's counter sample `karpenter_nodes_created` could
//! not be exported next to it; in 0.0.4 they are two families. It also lets summaries (which
//! prometheus-client does not have) be written as the real thing: `# TYPE … summary` with
//! `quantile` samples, `_sum` and `_count`.

/// Content type of the 0.0.4 text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Rewrites prometheus-client's OpenMetrics text into the 0.0.4 text format:
/// - a counter family is named as its samples (`x_total`, or `x` for a counter exported
///   under a 0.36 name without the suffix);
/// - an info family `x` becomes the gauge `x_info`, `unknown` becomes `untyped`;
/// - `# UNIT` and `# EOF` lines go; so do families without samples (client_golang does not
///   export a vector nobody has written to).
pub fn from_openmetrics(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut family = Family::default();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            family.flush(&mut out);
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            family.name = name.to_owned();
            family.help = Some(help.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            if name != family.name {
                family.flush(&mut out);
                family.name = name.to_owned();
            }
            family.kind = kind.to_owned();
        } else if line.starts_with('#') {
            // `# UNIT` and `# EOF`.
        } else if !line.is_empty() {
            family.samples.push(line.to_owned());
        }
    }
    family.flush(&mut out);
    out
}

/// One family being converted.
#[derive(Default)]
struct Family {
    name: String,
    help: Option<String>,
    kind: String,
    samples: Vec<String>,
}

impl Family {
    /// Writes the family in 0.0.4 form, then forgets it.
    fn flush(&mut self, out: &mut String) {
        let family = std::mem::take(self);
        if family.samples.is_empty() {
            return;
        }
        let sample_name =
            |s: &str| -> String { s.split(['{', ' ']).next().unwrap_or_default().to_owned() };
        let (name, kind) = match family.kind.as_str() {
            "counter" => {
                let totalled = format!("{}_total", family.name);
                let name = if family.samples.iter().any(|s| sample_name(s) == totalled) {
                    totalled
                } else {
                    family.name.clone()
                };
                (name, "counter")
            }
            "info" => (format!("{}_info", family.name), "gauge"),
            "gauge" => (family.name.clone(), "gauge"),
            "histogram" => (family.name.clone(), "histogram"),
            "summary" => (family.name.clone(), "summary"),
            _ => (family.name.clone(), "untyped"),
        };
        if let Some(help) = &family.help {
            out.push_str(&format!("# HELP {name} {help}\n"));
        }
        out.push_str(&format!("# TYPE {name} {kind}\n"));
        for s in &family.samples {
            out.push_str(s);
            out.push('\n');
        }
    }
}

/// A label value escaped for the text format (backslash, double quote, newline).
pub fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// `{a="1",b="2"}`, or nothing when there are no labels.
pub fn label_set<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let parts: Vec<String> = labels
        .into_iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v)))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// A sample value as Prometheus writes it (`NaN`, `+Inf`, `-Inf`, or the shortest float).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_info_and_unknown_become_their_text_format_families() {
        let om = "# HELP karpenter_nodes_created Nodes created.\n\
                  # TYPE karpenter_nodes_created counter\n\
                  karpenter_nodes_created_total{nodepool=\"a\"} 3\n\
                  # HELP karpenter_nodes_created Nodes created (0.36 name).\n\
                  # TYPE karpenter_nodes_created counter\n\
                  karpenter_nodes_created{nodepool=\"a\"} 3\n\
                  # HELP karpenter_build Build.\n\
                  # TYPE karpenter_build info\n\
                  karpenter_build_info{version=\"0.1.0\"} 1\n\
                  # HELP odd Something.\n\
                  # TYPE odd unknown\n\
                  # UNIT odd seconds\n\
                  odd 2\n\
                  # EOF\n";
        assert_eq!(
            from_openmetrics(om),
            "# HELP karpenter_nodes_created_total Nodes created.\n\
             # TYPE karpenter_nodes_created_total counter\n\
             karpenter_nodes_created_total{nodepool=\"a\"} 3\n\
             # HELP karpenter_nodes_created Nodes created (0.36 name).\n\
             # TYPE karpenter_nodes_created counter\n\
             karpenter_nodes_created{nodepool=\"a\"} 3\n\
             # HELP karpenter_build_info Build.\n\
             # TYPE karpenter_build_info gauge\n\
             karpenter_build_info{version=\"0.1.0\"} 1\n\
             # HELP odd Something.\n\
             # TYPE odd untyped\n\
             odd 2\n"
        );
    }

    #[test]
    fn families_without_samples_are_left_out_and_histograms_kept_whole() {
        let om = "# HELP empty Nobody wrote it.\n\
                  # TYPE empty counter\n\
                  # HELP h A histogram.\n\
                  # TYPE h histogram\n\
                  h_sum 1.5\n\
                  h_count 1\n\
                  h_bucket{le=\"1.0\"} 0\n\
                  h_bucket{le=\"+Inf\"} 1\n\
                  # EOF\n";
        let text = from_openmetrics(om);
        assert!(!text.contains("empty"), "{text}");
        assert!(text.starts_with("# HELP h A histogram.\n# TYPE h histogram\nh_sum 1.5\n"));
        assert!(text.ends_with("h_bucket{le=\"+Inf\"} 1\n"), "{text}");
        assert!(!text.contains("EOF"));
    }

    #[test]
    fn label_values_are_escaped_and_values_formatted_as_prometheus_does() {
        assert_eq!(
            label_set([("a", "x\"y"), ("b", "back\\slash\nnl")]),
            "{a=\"x\\\"y\",b=\"back\\\\slash\\nnl\"}"
        );
        assert_eq!(label_set([]), "");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(3.0), "3");
    }
}
