//! A real Prometheus (Debian's `prometheus` package, which `cargo xtask e2e` installs) on
//! loopback, scraping the controller with the users' own scrape job, and its HTTP query API.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The users' scrape job (`extraScrapeConfigs` of the getting-started guide's
/// `prometheus-values.yaml`) made runnable outside the cluster: `$KARPENTER_NAMESPACE` set, and
/// each `kubernetes_sd_configs` entry given the API server, CA and token an in-cluster
/// Prometheus would get from its ServiceAccount. The relabel rules are kept as they are.
pub fn scrape_job(
    values_yaml: &str,
    namespace: &str,
    api_server: &str,
    ca_file: &Path,
    token_file: &Path,
) -> Result<serde_yaml::Value, String> {
    let values: serde_yaml::Value =
        serde_yaml::from_str(values_yaml).map_err(|e| format!("values: {e}"))?;
    let extra = values["extraScrapeConfigs"]
        .as_str()
        .ok_or("values: no extraScrapeConfigs string")?
        .replace("$KARPENTER_NAMESPACE", namespace);
    let mut jobs: Vec<serde_yaml::Value> =
        serde_yaml::from_str(&extra).map_err(|e| format!("extraScrapeConfigs: {e}"))?;
    let mut job = jobs.pop().ok_or("extraScrapeConfigs: no job")?;
    let sd = job["kubernetes_sd_configs"]
        .as_sequence_mut()
        .ok_or("the job has no kubernetes_sd_configs")?;
    for entry in sd {
        let map = entry
            .as_mapping_mut()
            .ok_or("kubernetes_sd_configs entry")?;
        map.insert("api_server".into(), api_server.into());
        map.insert(
            "tls_config".into(),
            serde_yaml::to_value(serde_json::json!({"ca_file": ca_file}))
                .map_err(|e| e.to_string())?,
        );
        map.insert(
            "authorization".into(),
            serde_yaml::to_value(serde_json::json!({"credentials_file": token_file}))
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(job)
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

/// One HTTP/1.0 request over a plain socket: (status, body).
async fn http(
    address: &str,
    method: &str,
    path: &str,
    form: &str,
) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {address}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_scrape_job_gets_the_namespace_and_the_api_servers_credentials() {
        let values = "extraScrapeConfigs: |\n    - job_name: karpenter\n      kubernetes_sd_configs:\n      - role: endpoints\n        namespaces:\n          names:\n          - $KARPENTER_NAMESPACE\n      relabel_configs:\n      - source_labels: [a, b]\n        action: keep\n        regex: karpenter;http-metrics\n";
        let job = scrape_job(
            values,
            "karpenter",
            "https://127.0.0.1:6443",
            Path::new("/ca"),
            Path::new("/t"),
        )
        .unwrap();
        assert_eq!(job["job_name"].as_str(), Some("karpenter"));
        let sd = &job["kubernetes_sd_configs"][0];
        assert_eq!(sd["namespaces"]["names"][0].as_str(), Some("karpenter"));
        assert_eq!(sd["api_server"].as_str(), Some("https://127.0.0.1:6443"));
        assert_eq!(sd["tls_config"]["ca_file"].as_str(), Some("/ca"));
        assert_eq!(sd["authorization"]["credentials_file"].as_str(), Some("/t"));
        assert_eq!(
            job["relabel_configs"][0]["regex"].as_str(),
            Some("karpenter;http-metrics")
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
