//! `SdkIam` against `aws-smithy-mocks` (request shape, error mapping), and the managed
//! instance profile's name, tags and reconciliation.

use std::sync::{Arc, Mutex};

use aws_sdk_iam::Client;
use aws_sdk_iam::error::ErrorMetadata;
use aws_sdk_iam::operation::add_role_to_instance_profile::{
    AddRoleToInstanceProfileInput, AddRoleToInstanceProfileOutput,
};
use aws_sdk_iam::operation::create_instance_profile::{
    CreateInstanceProfileError, CreateInstanceProfileInput, CreateInstanceProfileOutput,
};
use aws_sdk_iam::operation::get_instance_profile::{
    GetInstanceProfileError, GetInstanceProfileOutput,
};
use aws_sdk_iam::types as sdk;
use aws_smithy_mocks::{Rule, mock};

use super::*;
use crate::aws::cloud::fake_apis::FakeIam;

fn client(rules: &[&Rule]) -> SdkIam {
    SdkIam::new(crate::aws::sequential_mock_client!(aws_sdk_iam, rules))
}

fn profile(name: &str, roles: &[&str]) -> sdk::InstanceProfile {
    let mut b = sdk::InstanceProfile::builder()
        .instance_profile_name(name)
        .instance_profile_id("AIPA1")
        .arn(format!("arn:aws:iam::123456789012:instance-profile/{name}"))
        .path("/")
        .create_date(aws_sdk_iam::primitives::DateTime::from_secs(0))
        .set_roles(Some(Vec::new()));
    for r in roles {
        b = b.roles(
            sdk::Role::builder()
                .role_name(*r)
                .role_id("AROA1")
                .arn(format!("arn:aws:iam::123456789012:role/{r}"))
                .path("/")
                .create_date(aws_sdk_iam::primitives::DateTime::from_secs(0))
                .build()
                .unwrap(),
        );
    }
    b.build().unwrap()
}

#[tokio::test]
async fn get_maps_the_profile_and_no_such_entity_to_none() {
    let found = mock!(Client::get_instance_profile)
        .match_requests(|i| i.instance_profile_name() == Some("prod_1"))
        .then_output(|| {
            GetInstanceProfileOutput::builder()
                .instance_profile(profile("prod_1", &["NodeRole"]))
                .build()
        });
    let missing = mock!(Client::get_instance_profile).then_error(|| {
        GetInstanceProfileError::generic(
            ErrorMetadata::builder()
                .code("NoSuchEntity")
                .message("Instance Profile prod_2 cannot be found.")
                .build(),
        )
    });
    let denied = mock!(Client::get_instance_profile).then_error(|| {
        GetInstanceProfileError::generic(
            ErrorMetadata::builder()
                .code("AccessDenied")
                .message("not allowed")
                .build(),
        )
    });
    let iam = client(&[&found, &missing, &denied]);
    assert_eq!(
        iam.get_instance_profile("prod_1").await.unwrap(),
        Some(InstanceProfile {
            name: "prod_1".into(),
            roles: vec!["NodeRole".into()],
        })
    );
    assert_eq!(iam.get_instance_profile("prod_2").await.unwrap(), None);
    let err = iam.get_instance_profile("prod_3").await.unwrap_err();
    assert!(
        matches!(&err, Ec2Error::Api { operation, code, .. }
            if operation == "GetInstanceProfile" && code == "AccessDenied"),
        "{err:?}"
    );
    assert_eq!(found.num_calls(), 1);
}

#[tokio::test]
async fn create_sends_name_and_tags_and_tolerates_already_exists() {
    let seen: Arc<Mutex<Option<CreateInstanceProfileInput>>> = Arc::default();
    let sink = seen.clone();
    let ok = mock!(Client::create_instance_profile)
        .match_requests(move |i| {
            *sink.lock().unwrap() = Some(i.clone());
            true
        })
        .then_output(|| {
            CreateInstanceProfileOutput::builder()
                .instance_profile(profile("prod_1", &[]))
                .build()
        });
    let exists = mock!(Client::create_instance_profile).then_error(|| {
        CreateInstanceProfileError::generic(
            ErrorMetadata::builder()
                .code("EntityAlreadyExists")
                .message("Instance Profile prod_1 already exists.")
                .build(),
        )
    });
    let throttled = mock!(Client::create_instance_profile).then_error(|| {
        CreateInstanceProfileError::generic(ErrorMetadata::builder().code("Throttling").build())
    });
    let iam = client(&[&ok, &exists, &throttled]);
    let tags = instance_profile_tags("prod", "us-east-1", "default");
    iam.create_instance_profile("prod_1", &tags).await.unwrap();
    iam.create_instance_profile("prod_1", &tags).await.unwrap();
    let err = iam
        .create_instance_profile("prod_1", &tags)
        .await
        .unwrap_err();
    assert!(matches!(err, Ec2Error::Throttled { .. }), "{err:?}");

    let input = seen.lock().unwrap().clone().unwrap();
    assert_eq!(input.instance_profile_name(), Some("prod_1"));
    let sent: BTreeMap<String, String> = input
        .tags()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect();
    assert_eq!(sent, tags);
    assert_eq!(sent["karpenter.k8s.aws/ec2nodeclass"], "default");
    assert_eq!(sent["kubernetes.io/cluster/prod"], "owned");
    assert_eq!(sent["karpenter.sh/managed-by"], "prod");
    assert_eq!(sent["topology.kubernetes.io/region"], "us-east-1");
}

#[tokio::test]
async fn add_role_sends_profile_and_role() {
    let seen: Arc<Mutex<Option<AddRoleToInstanceProfileInput>>> = Arc::default();
    let sink = seen.clone();
    let rule = mock!(Client::add_role_to_instance_profile)
        .match_requests(move |i| {
            *sink.lock().unwrap() = Some(i.clone());
            true
        })
        .then_output(|| AddRoleToInstanceProfileOutput::builder().build());
    let iam = client(&[&rule]);
    iam.add_role_to_instance_profile("prod_1", "NodeRole")
        .await
        .unwrap();
    let input = seen.lock().unwrap().clone().unwrap();
    assert_eq!(input.instance_profile_name(), Some("prod_1"));
    assert_eq!(input.role_name(), Some("NodeRole"));
}

#[test]
fn profile_name_is_stable_and_depends_on_region_and_node_class() {
    let a = instance_profile_name("prod", "us-east-1", "default");
    assert_eq!(a, instance_profile_name("prod", "us-east-1", "default"));
    assert!(a.starts_with("prod_"), "{a}");
    assert!(
        a["prod_".len()..].bytes().all(|b| b.is_ascii_digit()),
        "{a}"
    );
    assert_ne!(a, instance_profile_name("prod", "us-west-2", "default"));
    assert_ne!(a, instance_profile_name("prod", "us-east-1", "gpu"));
    assert_eq!(role_name("path/to/NodeRole"), "NodeRole");
    assert_eq!(role_name("NodeRole"), "NodeRole");
}

#[tokio::test]
async fn ensure_creates_missing_profile_adds_role_and_swaps_a_changed_role() {
    let iam = FakeIam::default();
    let tags = instance_profile_tags("prod", "us-east-1", "default");
    let name = ensure_instance_profile(&iam, "prod_1", "path/NodeRole", &tags)
        .await
        .unwrap();
    assert_eq!(name, "prod_1");
    assert_eq!(
        iam.calls(),
        vec![
            "GetInstanceProfile prod_1",
            "CreateInstanceProfile prod_1",
            "AddRoleToInstanceProfile prod_1 NodeRole",
        ]
    );
    assert_eq!(iam.profile_tags("prod_1"), Some(tags.clone()));

    // Already in place: one read, nothing written.
    iam.clear_calls();
    ensure_instance_profile(&iam, "prod_1", "NodeRole", &tags)
        .await
        .unwrap();
    assert_eq!(iam.calls(), vec!["GetInstanceProfile prod_1"]);

    // The role changed: the old one leaves, the new one joins.
    iam.clear_calls();
    ensure_instance_profile(&iam, "prod_1", "OtherRole", &tags)
        .await
        .unwrap();
    assert_eq!(
        iam.calls(),
        vec![
            "GetInstanceProfile prod_1",
            "RemoveRoleFromInstanceProfile prod_1 NodeRole",
            "AddRoleToInstanceProfile prod_1 OtherRole",
        ]
    );
}

/// A [`FakeIam`] whose first read of a profile is stale: it misses the role another caller
/// adds between that read and this caller's write.
struct RaceLost {
    inner: FakeIam,
    stale_reads: Mutex<u32>,
}

#[async_trait]
impl IamApi for RaceLost {
    async fn get_instance_profile(&self, name: &str) -> Result<Option<InstanceProfile>, Ec2Error> {
        let real = self.inner.get_instance_profile(name).await?;
        let mut stale = self.stale_reads.lock().unwrap();
        if *stale > 0 {
            *stale -= 1;
            return Ok(real.map(|p| InstanceProfile {
                roles: Vec::new(),
                ..p
            }));
        }
        Ok(real)
    }
    async fn create_instance_profile(
        &self,
        name: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), Ec2Error> {
        self.inner.create_instance_profile(name, tags).await
    }
    async fn add_role_to_instance_profile(&self, p: &str, r: &str) -> Result<(), Ec2Error> {
        self.inner.add_role_to_instance_profile(p, r).await
    }
    async fn remove_role_from_instance_profile(&self, p: &str, r: &str) -> Result<(), Ec2Error> {
        self.inner.remove_role_from_instance_profile(p, r).await
    }
}

#[tokio::test]
async fn ensure_succeeds_when_a_concurrent_caller_added_the_role_first() {
    let tags = instance_profile_tags("prod", "us-east-1", "default");
    let iam = RaceLost {
        inner: FakeIam::default(),
        stale_reads: Mutex::new(0),
    };
    ensure_instance_profile(&iam, "prod_1", "NodeRole", &tags)
        .await
        .unwrap();
    // The other caller's read saw no role; its add is refused (LimitExceeded) but the role is
    // there, which is all it wanted.
    *iam.stale_reads.lock().unwrap() = 1;
    ensure_instance_profile(&iam, "prod_1", "NodeRole", &tags)
        .await
        .expect("the role is in place");
    // A refusal that leaves the profile without our role is still an error (the next
    // reconcile, reading the profile afresh, swaps the role).
    *iam.stale_reads.lock().unwrap() = 1;
    let err = ensure_instance_profile(&iam, "prod_1", "OtherRole", &tags).await;
    assert!(
        matches!(&err, Err(Ec2Error::Api { code, .. }) if code == "LimitExceeded"),
        "{err:?}"
    );
    ensure_instance_profile(&iam, "prod_1", "OtherRole", &tags)
        .await
        .expect("swapped on the next try");
}
