//! State of the fake AWS on disk (`aws.json`) and the checks on the process it names.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Environment variable overriding the state directory (shared with the `e2e` crate).
pub const STATE_DIR_VAR: &str = "KARPENTER_E2E_DIR";
/// Name of the state file the launcher writes.
pub const STATE_FILE: &str = "aws.json";
/// Path of the launcher inside the workspace; also how its command line is recognised.
pub const LAUNCHER: &str = "e2e/fakeaws/launcher.py";

pub use crate::contract::AwsInfo;

/// The workspace root (the xtask crate lives in `<root>/xtask`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// The state directory: the explicit argument, else `$KARPENTER_E2E_DIR`, else
/// `<workspace>/target/e2e`. Relative paths are taken from the current directory.
pub fn resolve_state_dir(arg: Option<&Path>, env: Option<OsString>, workspace: &Path) -> PathBuf {
    match (arg, env) {
        (Some(dir), _) => dir.to_owned(),
        (None, Some(dir)) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace.join("target").join("e2e"),
    }
}

/// Reads `aws.json` from `dir`; `None` when it does not exist.
pub fn read(dir: &Path) -> Result<Option<AwsInfo>> {
    let path = dir.join(STATE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .with_context(|| format!("parsing {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Removes `aws.json` from `dir` (no error when it is already gone).
pub fn remove(dir: &Path) -> Result<()> {
    let path = dir.join(STATE_FILE);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// True when `args` (a `/proc/<pid>/cmdline`) is our launcher serving `state_dir`: a recycled
/// pid, or a launcher of another state directory, must never be killed.
pub fn is_launcher_for(args: &[String], state_dir: &Path) -> bool {
    let is_launcher = args.iter().any(|a| a.ends_with(LAUNCHER));
    let serves_dir = args
        .windows(2)
        .any(|w| w[0] == "--state-dir" && Path::new(&w[1]) == state_dir);
    is_launcher && serves_dir
}

/// Arguments of a live process (`None` when it is gone or a zombie).
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    if !is_alive(pid) {
        return None;
    }
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// True while `pid` exists and is not a zombie (an exited child of ours nobody reaped yet).
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses, which may itself contain spaces.
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().chars().next()),
            Some(Some('Z' | 'X'))
        ),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn state_dir_precedence_is_argument_then_env_then_default() {
        let ws = Path::new("/ws");
        let arg = Path::new("/a");
        assert_eq!(resolve_state_dir(Some(arg), Some("/e".into()), ws), arg);
        assert_eq!(
            resolve_state_dir(None, Some("/e".into()), ws),
            Path::new("/e")
        );
        assert_eq!(
            resolve_state_dir(None, Some("".into()), ws),
            Path::new("/ws/target/e2e")
        );
        assert_eq!(
            resolve_state_dir(None, None, ws),
            Path::new("/ws/target/e2e")
        );
    }

    #[test]
    fn recognises_only_our_launcher_for_this_state_dir() {
        let dir = Path::new("/w/target/e2e");
        let ours = strings(&[
            "/root/.cache/karpenter-rs/moto-5.2.5-py311/bin/python",
            "/w/e2e/fakeaws/launcher.py",
            "--state-dir",
            "/w/target/e2e",
            "--cluster-name",
            "e2e",
        ]);
        assert!(is_launcher_for(&ours, dir));
        assert!(!is_launcher_for(&ours, Path::new("/w/target/other")));
        let other = strings(&[
            "python3",
            "-m",
            "http.server",
            "--state-dir",
            "/w/target/e2e",
        ]);
        assert!(!is_launcher_for(&other, dir));
        assert!(!is_launcher_for(&[], dir));
    }

    #[test]
    fn this_process_is_alive_and_a_bogus_pid_is_not() {
        assert!(is_alive(std::process::id()));
        assert!(cmdline(std::process::id()).is_some_and(|a| !a.is_empty()));
        assert!(!is_alive(u32::MAX));
    }

    #[test]
    fn state_file_round_trips_and_missing_is_none() {
        let dir = std::env::temp_dir().join(format!("xtask-aws-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(read(&dir).unwrap(), None);
        let info = AwsInfo {
            endpoint: "http://127.0.0.1:1".into(),
            region: "us-east-1".into(),
            cluster_name: "e2e".into(),
            vpc_id: "vpc-1".into(),
            subnets: vec![crate::contract::SubnetInfo {
                id: "subnet-1".into(),
                zone: "us-east-1a".into(),
                cidr: "10.0.0.0/19".into(),
            }],
            security_group_ids: vec!["sg-1".into()],
            interruption_queue_name: "e2e".into(),
            interruption_queue_url: "http://127.0.0.1:1/123456789012/e2e".into(),
            pid: Some(7),
        };
        std::fs::write(dir.join(STATE_FILE), serde_json::to_string(&info).unwrap()).unwrap();
        assert_eq!(read(&dir).unwrap(), Some(info));
        remove(&dir).unwrap();
        remove(&dir).unwrap(); // idempotent
        std::fs::write(dir.join(STATE_FILE), "{").unwrap();
        assert!(read(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
