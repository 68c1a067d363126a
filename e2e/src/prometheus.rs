//! A real Prometheus (Debian's `prometheus` package, which `cargo xtask e2e` installs) on
//! loopback, scraping the controller with the users' own scrape job, and its HTTP query API.
//!
//! Debian builds Prometheus without Kubernetes service discovery, so the job's
//! `kubernetes_sd_configs` (role `endpoints`) becomes a `file_sd_configs` that the harness keeps
//! filled from the API server's Endpoints objects, with the labels Kubernetes discovery sets
//! ([`endpoints_target_groups`]): the job's own relabel rules then pick the target, as they do
//! in the users' cluster.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::http_request as http;
use serde_json::Value;

/// The users' scrape job (`extraScrapeConfigs` of the getting-started guide's
/// `prometheus-values.yaml`) made runnable here: `$KARPENTER_NAMESPACE` set, and its
/// `kubernetes_sd_configs` replaced by `file_sd_configs` reading `targets_file`. Also the
/// namespaces the Kubernetes discovery was limited to. The relabel rules are kept as they are.
pub fn scrape_job(
    values_yaml: &str,
    namespace: &str,
    targets_file: &Path,
) -> Result<(serde_yaml::Value, Vec<String>), String> {
    let values: serde_yaml::Value =
        serde_yaml::from_str(values_yaml).map_err(|e| format!("values: {e}"))?;
    let extra = values["extraScrapeConfigs"]
        .as_str()
        .ok_or("values: no extraScrapeConfigs string")?
        .replace("$KARPENTER_NAMESPACE", namespace);
    let mut jobs: Vec<serde_yaml::Value> =
        serde_yaml::from_str(&extra).map_err(|e| format!("extraScrapeConfigs: {e}"))?;
    let mut job = jobs.pop().ok_or("extraScrapeConfigs: no job")?;
    let map = job.as_mapping_mut().ok_or("the job is not a mapping")?;
    let sd = map
        .remove("kubernetes_sd_configs")
        .ok_or("the job has no kubernetes_sd_configs")?;
    let mut namespaces = Vec::new();
    for entry in sd.as_sequence().into_iter().flatten() {
        if entry["role"].as_str() != Some("endpoints") {
            return Err(format!(
                "only role endpoints is emulated, not {:?}",
                entry["role"]
            ));
        }
        for n in entry["namespaces"]["names"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            namespaces.extend(n.as_str().map(str::to_owned));
        }
    }
    let file_sd = serde_json::json!([{"files": [targets_file], "refresh_interval": "1s"}]);
    map.insert(
        "file_sd_configs".into(),
        serde_yaml::to_value(file_sd).map_err(|e| e.to_string())?,
    );
    Ok((job, namespaces))
}

/// File-SD target groups for Endpoints objects: one target per address and port, labelled as
/// Prometheus's Kubernetes discovery (role `endpoints`) labels it.
pub fn endpoints_target_groups(endpoints: &[k8s_openapi::api::core::v1::Endpoints]) -> Value {
    let mut groups = Vec::new();
    for ep in endpoints {
        let name = ep.metadata.name.clone().unwrap_or_default();
        let namespace = ep.metadata.namespace.clone().unwrap_or_default();
        for subset in ep.subsets.iter().flatten() {
            for port in subset.ports.iter().flatten() {
                for address in subset.addresses.iter().flatten() {
                    groups.push(serde_json::json!({
                        "targets": [format!("{}:{}", address.ip, port.port)],
                        "labels": {
                            "__meta_kubernetes_namespace": namespace,
                            "__meta_kubernetes_endpoints_name": name,
                            "__meta_kubernetes_service_name": name,
                            "__meta_kubernetes_endpoint_port_name": port.name.clone().unwrap_or_default(),
                            "__meta_kubernetes_endpoint_port_protocol": port.protocol.clone().unwrap_or_else(|| "TCP".into()),
                            "__meta_kubernetes_endpoint_ready": "true",
                        },
                    }));
                }
            }
        }
    }
    Value::Array(groups)
}

/// Writes `groups` to `file` atomically (Prometheus may read it at any time).
pub fn write_targets(file: &Path, groups: &Value) {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(groups).expect("json")).expect("write targets");
    std::fs::rename(&tmp, file).expect("rename targets");
}

/// A running Prometheus; killed on drop.
pub struct Prometheus {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub address: String,
    /// Its log file.
    pub log: PathBuf,
}

impl Prometheus {
    /// Starts `prometheus` in `dir` with the scrape `jobs` and a 2 s scrape interval.
    pub fn start(dir: &Path, jobs: &[serde_yaml::Value]) -> Prometheus {
        std::fs::create_dir_all(dir).expect("prometheus dir");
        let config = serde_json::json!({
            "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
            "scrape_configs": jobs,
        });
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, serde_yaml::to_string(&config).expect("yaml"))
            .expect("write prometheus.yml");
        let port = crate::controller::free_port();
        let address = format!("127.0.0.1:{port}");
        let log = dir.join("prometheus.log");
        let out = std::fs::File::create(&log).expect("prometheus log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdout(Stdio::from(out.try_clone().expect("log clone")))
            .stderr(Stdio::from(out))
            .spawn()
            .expect(
                "starting prometheus (Debian package `prometheus`; `cargo xtask e2e` installs it)",
            );
        Prometheus {
            child,
            address,
            log,
        }
    }

    /// Waits until `/-/ready` answers 200.
    pub async fn wait_ready(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok((200, _)) = http(&self.address, "GET", "/-/ready", "").await {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "prometheus not ready after {timeout:?}; log: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Evaluates `promql` now; the result vector (or an error naming Prometheus's message).
    pub async fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let body = format!("query={}", form_encode(promql));
        let (status, text) = http(&self.address, "POST", "/api/v1/query", &body)
            .await
            .map_err(|e| e.to_string())?;
        let json: Value =
            serde_json::from_str(&text).map_err(|e| format!("{status}: {e}: {text}"))?;
        if json["status"] != "success" {
            return Err(format!(
                "{status}: {}: {}",
                json["errorType"], json["error"]
            ));
        }
        let data = &json["data"];
        match data["resultType"].as_str() {
            Some("vector") | Some("matrix") => {
                Ok(data["result"].as_array().cloned().unwrap_or_default())
            }
            // A scalar is one value.
            _ => Ok(vec![data["result"].clone()]),
        }
    }

    /// The health of each scrape target (`up`, `down`, `unknown`) by scrape URL.
    pub async fn targets(&self) -> Vec<(String, String)> {
        let Ok((_, text)) = http(&self.address, "GET", "/api/v1/targets", "").await else {
            return Vec::new();
        };
        let json: Value = serde_json::from_str(&text).unwrap_or_default();
        json["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                (
                    t["scrapeUrl"].as_str().unwrap_or_default().to_owned(),
                    t["health"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `application/x-www-form-urlencoded` of a value.
fn form_encode(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_scrape_job_reads_its_targets_from_a_file_and_keeps_its_relabel_rules() {
        let values = "extraScrapeConfigs: |\n    - job_name: karpenter\n      kubernetes_sd_configs:\n      - role: endpoints\n        namespaces:\n          names:\n          - $KARPENTER_NAMESPACE\n      relabel_configs:\n      - source_labels: [a, b]\n        action: keep\n        regex: karpenter;http-metrics\n";
        let (job, namespaces) = scrape_job(values, "karpenter", Path::new("/t.json")).unwrap();
        assert_eq!(job["job_name"].as_str(), Some("karpenter"));
        assert_eq!(namespaces, ["karpenter"]);
        assert!(job.get("kubernetes_sd_configs").is_none());
        assert_eq!(
            job["file_sd_configs"][0]["files"][0].as_str(),
            Some("/t.json")
        );
        assert_eq!(
            job["relabel_configs"][0]["regex"].as_str(),
            Some("karpenter;http-metrics")
        );
    }

    #[test]
    fn endpoints_become_targets_labelled_as_kubernetes_discovery_does() {
        let ep: k8s_openapi::api::core::v1::Endpoints = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "karpenter", "namespace": "karpenter"},
            "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
                         "ports": [{"name": "http-metrics", "port": 8000, "protocol": "TCP"}]}],
        }))
        .unwrap();
        let groups = endpoints_target_groups(&[ep]);
        assert_eq!(groups.as_array().unwrap().len(), 2);
        assert_eq!(groups[1]["targets"][0], "10.0.0.2:8000");
        assert_eq!(
            groups[0]["labels"]["__meta_kubernetes_endpoints_name"],
            "karpenter"
        );
        assert_eq!(
            groups[0]["labels"]["__meta_kubernetes_endpoint_port_name"],
            "http-metrics"
        );
    }

    #[test]
    fn form_encoding_escapes_everything_but_unreserved() {
        assert_eq!(
            form_encode("sum(x{a=~\"b.c\"}) / 2"),
            "sum%28x%7Ba%3D~%22b.c%22%7D%29%20%2F%202"
        );
    }
}
