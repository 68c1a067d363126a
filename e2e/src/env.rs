//! The environment an e2e test runs in, as `cargo xtask e2e` describes it on disk.
//!
//! `cargo xtask cluster up` writes `cluster.json` and `cargo xtask aws up` writes `aws.json`, both
//! in the state directory (`$KARPENTER_E2E_DIR`, default `<workspace>/target/e2e`). The xtask
//! reads and writes them through the same source file, `contract.rs` (it does not depend on
//! this crate).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Environment variable naming the state directory.
pub const STATE_DIR_VAR: &str = "KARPENTER_E2E_DIR";

pub use crate::contract::{AwsInfo, ClusterInfo, SubnetInfo};

/// Everything an e2e test needs to reach the bed.
#[derive(Clone, Debug)]
pub struct TestEnv {
    /// Where the state files live.
    pub state_dir: PathBuf,
    /// The control plane.
    pub cluster: ClusterInfo,
    /// The fake AWS account.
    pub aws: AwsInfo,
}

/// Why the environment could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// A state file is missing: the bed is not up.
    #[error(
        "{path} is missing: the e2e environment is not running. Run the e2e tests with `cargo xtask e2e` \
         (or start it with `cargo xtask cluster up && cargo xtask aws up` and set {STATE_DIR_VAR})"
    )]
    Missing {
        /// The file that was looked for.
        path: PathBuf,
    },
    /// A state file exists but cannot be read or parsed.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
}

/// The default state directory: `<workspace>/target/e2e`.
pub fn default_state_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e crate lives in the workspace")
        .join("target")
        .join("e2e")
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, EnvError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(EnvError::Missing {
                path: path.to_owned(),
            });
        }
        Err(e) => {
            return Err(EnvError::Invalid {
                path: path.to_owned(),
                message: e.to_string(),
            });
        }
    };
    serde_json::from_str(&text).map_err(|e| EnvError::Invalid {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

impl TestEnv {
    /// Loads the environment from `dir`.
    pub fn load_from(dir: &Path) -> Result<Self, EnvError> {
        Ok(Self {
            state_dir: dir.to_owned(),
            cluster: read_json(&dir.join("cluster.json"))?,
            aws: read_json(&dir.join("aws.json"))?,
        })
    }

    /// Loads the environment from `$KARPENTER_E2E_DIR` or the default state directory.
    pub fn load() -> Result<Self, EnvError> {
        let dir = std::env::var_os(STATE_DIR_VAR)
            .map(PathBuf::from)
            .unwrap_or_else(default_state_dir);
        Self::load_from(&dir)
    }

    /// Loads the environment or panics with instructions: e2e tests must fail loudly, never pass
    /// silently, when the bed is missing.
    pub fn require() -> Self {
        match Self::load() {
            Ok(env) => env,
            Err(e) => panic!("e2e environment unavailable: {e}"),
        }
    }
}

/// Loads only `aws.json` (tests of the fake AWS need no cluster) or panics with instructions:
/// these tests must fail loudly, never skip, when the fake AWS is not up.
pub fn require_aws() -> AwsInfo {
    let dir = std::env::var_os(STATE_DIR_VAR)
        .map(PathBuf::from)
        .unwrap_or_else(default_state_dir);
    match read_json(&dir.join("aws.json")) {
        Ok(aws) => aws,
        Err(e) => panic!(
            "fake AWS unavailable: {e}\nStart it with `cargo xtask aws up --state-dir {}` \
             (state directory: ${STATE_DIR_VAR}, default target/e2e), or run everything with \
             `cargo xtask e2e`",
            dir.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_state_names_the_file_and_the_command() {
        let dir = std::env::temp_dir().join(format!("karpenter-e2e-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = TestEnv::load_from(&dir).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("cluster.json"), "{text}");
        assert!(text.contains("cargo xtask e2e"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_both_state_files() {
        let dir = std::env::temp_dir().join(format!("karpenter-e2e-env2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cluster = ClusterInfo {
            kind: "local".into(),
            server: "https://127.0.0.1:1".into(),
            kubeconfig: dir.join("kubeconfig"),
            kubernetes_version: "v1.20.2".into(),
            pids: vec![1, 2],
        };
        let aws = AwsInfo {
            endpoint: "http://127.0.0.1:2".into(),
            region: "us-east-1".into(),
            cluster_name: "e2e".into(),
            vpc_id: "vpc-1".into(),
            subnets: vec![SubnetInfo {
                id: "subnet-1".into(),
                zone: "us-east-1a".into(),
                cidr: "10.0.0.0/20".into(),
            }],
            security_group_ids: vec!["sg-1".into()],
            interruption_queue_name: "e2e".into(),
            interruption_queue_url: "http://127.0.0.1:2/123/e2e".into(),
            pid: Some(3),
        };
        std::fs::write(
            dir.join("cluster.json"),
            serde_json::to_string(&cluster).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.join("aws.json"), serde_json::to_string(&aws).unwrap()).unwrap();
        let env = TestEnv::load_from(&dir).unwrap();
        assert_eq!(env.cluster, cluster);
        assert_eq!(env.aws, aws);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
