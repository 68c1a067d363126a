//! Karpenter's Grafana dashboards as the queries Grafana would send: every panel target's
//! PromQL and every template variable, read from the dashboard JSON, with Grafana's variables
//! substituted the way Grafana does (a multi-value "All" becomes the alternation of the
//! variable's values). Pure; the e2e dashboards test sends the queries to a real Prometheus.

use std::collections::BTreeMap;

use serde_json::Value;

/// A template variable of a dashboard.
#[derive(Clone, Debug, PartialEq)]
pub enum Variable {
    /// `label_values(<selector>, <label>)`: the values of `label` among the series of
    /// `selector`, asked of Prometheus as [`Variable::promql`].
    LabelValues {
        /// The variable's name.
        name: String,
        /// The series selector.
        selector: String,
        /// The label.
        label: String,
        /// Whether "All" selects every value (then `$name` is their alternation).
        include_all: bool,
    },
    /// A fixed list of options (`distribution_filter`).
    Custom {
        /// The variable's name.
        name: String,
        /// The options.
        options: Vec<String>,
    },
}

impl Variable {
    /// The variable's name.
    pub fn name(&self) -> &str {
        match self {
            Variable::LabelValues { name, .. } | Variable::Custom { name, .. } => name,
        }
    }

    /// For `label_values`: the PromQL whose result's `label` values are the options.
    pub fn promql(&self) -> Option<String> {
        match self {
            Variable::LabelValues {
                selector, label, ..
            } => Some(format!("count by ({label}) ({selector})")),
            Variable::Custom { .. } => None,
        }
    }
}

/// One panel query.
#[derive(Clone, Debug, PartialEq)]
pub struct PanelQuery {
    /// The panel's title.
    pub panel: String,
    /// The target's `refId`.
    pub ref_id: String,
    /// The PromQL, variables not yet substituted.
    pub expr: String,
}

/// A dashboard's variables and panel queries.
#[derive(Clone, Debug, Default)]
pub struct Dashboard {
    /// The title.
    pub title: String,
    /// Template variables (the data source variable left out).
    pub variables: Vec<Variable>,
    /// Every target of every panel (rows' panels included).
    pub queries: Vec<PanelQuery>,
}

/// Reads a dashboard's JSON.
pub fn parse(json: &Value) -> Result<Dashboard, String> {
    let title = json["title"].as_str().unwrap_or_default().to_owned();
    let mut variables = Vec::new();
    for v in json["templating"]["list"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().unwrap_or_default().to_owned();
        match v["type"].as_str() {
            Some("query") => {
                let query = v["query"]["query"]
                    .as_str()
                    .or_else(|| v["query"].as_str())
                    .ok_or_else(|| format!("{title}: variable {name} has no query"))?;
                let (selector, label) = parse_label_values(query).ok_or_else(|| {
                    format!("{title}: variable {name}: not label_values: {query}")
                })?;
                variables.push(Variable::LabelValues {
                    name,
                    selector,
                    label,
                    include_all: v["includeAll"].as_bool().unwrap_or(false),
                });
            }
            Some("custom") => {
                let options = v["query"]
                    .as_str()
                    .unwrap_or_default()
                    .split(',')
                    .map(|o| o.trim().to_owned())
                    .filter(|o| !o.is_empty())
                    .collect();
                variables.push(Variable::Custom { name, options });
            }
            _ => {}
        }
    }
    let mut queries = Vec::new();
    collect_panels(&json["panels"], &mut queries);
    Ok(Dashboard {
        title,
        variables,
        queries,
    })
}

fn collect_panels(panels: &Value, out: &mut Vec<PanelQuery>) {
    for p in panels.as_array().into_iter().flatten() {
        let panel = p["title"].as_str().unwrap_or_default();
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = t["expr"].as_str().filter(|e| !e.trim().is_empty()) {
                out.push(PanelQuery {
                    panel: panel.to_owned(),
                    ref_id: t["refId"].as_str().unwrap_or_default().to_owned(),
                    expr: expr.to_owned(),
                });
            }
        }
        collect_panels(&p["panels"], out);
    }
}

/// `label_values(sel, label)` → `(sel, label)`.
fn parse_label_values(query: &str) -> Option<(String, String)> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (selector, label) = inner.rsplit_once(',')?;
    Some((selector.trim().to_owned(), label.trim().to_owned()))
}

/// `expr` with Grafana's variables replaced: `$__rate_interval` and `$__interval` by the given
/// windows, then every `$name` / `${name}` in `values` (longest names first, so `$node` does
/// not eat `$nodepool`).
pub fn substitute(expr: &str, values: &BTreeMap<String, String>, rate_interval: &str) -> String {
    let mut out = expr
        .replace("$__rate_interval", rate_interval)
        .replace("${__rate_interval}", rate_interval)
        .replace("$__interval", rate_interval);
    let mut names: Vec<&String> = values.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        let value = &values[name];
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    out
}

/// The value of a multi-value variable with "All" selected, as Grafana sends it to
/// Prometheus: the values' alternation, regex metacharacters escaped.
pub fn all_value(values: &[String]) -> String {
    let escaped: Vec<String> = values.iter().map(|v| regex_escape(v)).collect();
    if escaped.len() == 1 {
        escaped[0].clone()
    } else {
        format!("({})", escaped.join("|"))
    }
}

/// Escapes regex metacharacters, doubling the backslash for a PromQL string literal.
fn regex_escape(v: &str) -> String {
    let mut out = String::new();
    for c in v.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push_str("\\\\");
        }
        out.push(c);
    }
    out
}

/// The variables a query uses, by name.
pub fn uses(expr: &str, variable: &str) -> bool {
    let plain = format!("${variable}");
    let braced = format!("${{{variable}}}");
    expr.contains(&braced)
        || expr.match_indices(&plain).any(|(i, _)| {
            !expr[i + plain.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn variables_and_nested_panel_targets_are_read() {
        let d = parse(&json!({
            "title": "Karpenter Capacity v1",
            "templating": {"list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus"},
                {"name": "nodepool", "type": "query", "includeAll": true,
                 "query": {"query": "label_values(karpenter_nodes_allocatable, nodepool)"}},
                {"name": "controller", "type": "query", "includeAll": false,
                 "query": "label_values(controller_runtime_reconcile_time_seconds_count{job=\"karpenter\"}, controller)"},
                {"name": "distribution_filter", "type": "custom", "query": "arch,nodepool"},
            ]},
            "panels": [
                {"title": "Row", "type": "row", "panels": [
                    {"title": "Inner", "targets": [{"refId": "A", "expr": "up"}]},
                ]},
                {"title": "Nodes", "targets": [{"refId": "A", "expr": "sum(x{nodepool=~\"$nodepool\"})"}, {"refId": "B", "expr": ""}]},
            ],
        }))
        .unwrap();
        assert_eq!(d.variables.len(), 3);
        assert_eq!(
            d.variables[1].promql().as_deref(),
            Some(
                "count by (controller) (controller_runtime_reconcile_time_seconds_count{job=\"karpenter\"})"
            )
        );
        assert_eq!(
            d.variables[2],
            Variable::Custom {
                name: "distribution_filter".into(),
                options: vec!["arch".into(), "nodepool".into()]
            }
        );
        let exprs: Vec<&str> = d.queries.iter().map(|q| q.expr.as_str()).collect();
        assert_eq!(exprs, ["up", "sum(x{nodepool=~\"$nodepool\"})"]);
    }

    #[test]
    fn substitution_is_by_whole_name_and_all_is_an_escaped_alternation() {
        let values = BTreeMap::from([
            ("node".to_owned(), "N".to_owned()),
            (
                "nodepool".to_owned(),
                all_value(&["a".into(), "t3.large".into()]),
            ),
        ]);
        assert_eq!(
            substitute(
                "rate(x{nodepool=~\"$nodepool\",node=\"${node}\"}[$__rate_interval])",
                &values,
                "1m"
            ),
            "rate(x{nodepool=~\"(a|t3\\\\.large)\",node=\"N\"}[1m])"
        );
        assert!(uses(
            "sum by ($distribution_filter)(x)",
            "distribution_filter"
        ));
        assert!(!uses("x{nodepool=~\"$nodepool\"}", "node"));
        assert!(uses("x{node=\"$node\"}", "node"));
    }
}
