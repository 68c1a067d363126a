//! The EC2NodeClass CRD's CEL and OpenAPI rules as a pure function, for API servers that cannot
//! run them (Kubernetes < 1.25) and for `karpenter validate`.

use karpenter_core::api::ValidationError;
use karpenter_core::api::kubelet::{
    KubeletConfiguration, SUPPORTED_EVICTION_SIGNALS, SUPPORTED_RESERVED_RESOURCES,
};

use super::{Alias, AmiFamily, EC2NodeClass};

/// Tag keys the node class may not set: Karpenter and EKS own them. `kubernetes.io/cluster/`
/// is a prefix.
pub const RESTRICTED_TAG_KEYS: &[&str] = &[
    "karpenter.sh/nodepool",
    "karpenter.sh/nodeclaim",
    "karpenter.k8s.aws/ec2nodeclass",
    "eks:eks-cluster-name",
];

/// Prefix of the restricted cluster-ownership tags.
pub const RESTRICTED_TAG_PREFIX: &str = "kubernetes.io/cluster";

const MAX_TERMS: usize = 30;
const MAX_BLOCK_DEVICE_MAPPINGS: usize = 50;
const MAX_ALIAS_LEN: usize = 30;

struct Errors {
    object: String,
    list: Vec<ValidationError>,
}

impl Errors {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.list.push(ValidationError {
            object: self.object.clone(),
            field: field.into(),
            message: message.into(),
        });
    }
}

/// True when `text` contains `prefix` followed by at least one `[0-9a-z]` (the CRD's unanchored
/// `subnet-[0-9a-z]+`-style patterns).
fn matches_id_pattern(text: &str, prefix: &str) -> bool {
    text.match_indices(prefix).any(|(i, _)| {
        text[i + prefix.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
    })
}

fn check_selector_tags(
    errs: &mut Errors,
    field: &str,
    tags: &std::collections::BTreeMap<String, String>,
) {
    if tags.iter().any(|(k, v)| k.is_empty() || v.is_empty()) {
        errs.push(
            format!("{field}.tags"),
            "empty tag keys or values aren't supported",
        );
    }
    if tags.len() > 20 {
        errs.push(format!("{field}.tags"), "must have at most 20 tags");
    }
}

/// Checks an EC2NodeClass against the rules of Karpenter's `karpenter.k8s.aws/v1` CRD.
///
/// Selector-term exclusivity (`id` with other fields) is checked per term, which is what the
/// rule messages say; the CRD's CEL spells it with `all()`, which only rejects the case where
/// every term mixes fields.
pub fn validate_ec2_node_class(nc: &EC2NodeClass) -> Result<(), Vec<ValidationError>> {
    let name = nc.metadata.name.clone().unwrap_or_default();
    let mut errs = Errors {
        object: format!("EC2NodeClass/{name}"),
        list: Vec::new(),
    };
    let spec = &nc.spec;

    // Subnets.
    let field = "spec.subnetSelectorTerms";
    if spec.subnet_selector_terms.is_empty() {
        errs.push(field, "subnetSelectorTerms cannot be empty");
    }
    if spec.subnet_selector_terms.len() > MAX_TERMS {
        errs.push(field, "must have at most 30 items");
    }
    for (i, term) in spec.subnet_selector_terms.iter().enumerate() {
        let f = format!("{field}[{i}]");
        match (&term.id, term.tags.is_empty()) {
            (None, true) => errs.push(&f, "expected at least one, got none, ['tags', 'id']"),
            (Some(_), false) => errs.push(
                &f,
                "'id' is mutually exclusive, cannot be set with a combination of other fields \
                 in a subnet selector term",
            ),
            _ => {}
        }
        if let Some(id) = &term.id
            && !matches_id_pattern(id, "subnet-")
        {
            errs.push(format!("{f}.id"), "must match subnet-[0-9a-z]+");
        }
        check_selector_tags(&mut errs, &f, &term.tags);
    }

    // Security groups.
    let field = "spec.securityGroupSelectorTerms";
    if spec.security_group_selector_terms.is_empty() {
        errs.push(field, "securityGroupSelectorTerms cannot be empty");
    }
    if spec.security_group_selector_terms.len() > MAX_TERMS {
        errs.push(field, "must have at most 30 items");
    }
    for (i, term) in spec.security_group_selector_terms.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let tags = !term.tags.is_empty();
        if !tags && term.id.is_none() && term.name.is_none() {
            errs.push(
                &f,
                "expected at least one, got none, ['tags', 'id', 'name']",
            );
        }
        if term.id.is_some() && (tags || term.name.is_some()) {
            errs.push(
                &f,
                "'id' is mutually exclusive, cannot be set with a combination of other fields \
                 in a security group selector term",
            );
        } else if term.name.is_some() && tags {
            errs.push(
                &f,
                "'name' is mutually exclusive, cannot be set with a combination of other fields \
                 in a security group selector term",
            );
        }
        if let Some(id) = &term.id
            && !matches_id_pattern(id, "sg-")
        {
            errs.push(format!("{f}.id"), "must match sg-[0-9a-z]+");
        }
        check_selector_tags(&mut errs, &f, &term.tags);
    }

    // AMIs.
    validate_ami_terms(&mut errs, nc);

    // Role / instance profile.
    match (&spec.role, &spec.instance_profile) {
        (Some(_), None) | (None, Some(_)) => {}
        _ => errs.push(
            "spec",
            "must specify exactly one of ['role', 'instanceProfile']",
        ),
    }
    if spec.role.as_deref() == Some("") {
        errs.push("spec.role", "role cannot be empty");
    }
    if spec.instance_profile.as_deref() == Some("") {
        errs.push("spec.instanceProfile", "instanceProfile cannot be empty");
    }

    // Tags.
    for key in spec.tags.keys() {
        if key.is_empty() {
            errs.push("spec.tags", "empty tag keys aren't supported");
        } else if key.starts_with(RESTRICTED_TAG_PREFIX) {
            errs.push(
                "spec.tags",
                "tag contains a restricted tag matching kubernetes.io/cluster/",
            );
        } else if RESTRICTED_TAG_KEYS.contains(&key.as_str()) {
            errs.push(
                "spec.tags",
                format!("tag contains a restricted tag matching {key}"),
            );
        }
    }

    if let Some(kubelet) = &spec.kubelet {
        validate_kubelet(&mut errs, kubelet);
    }

    // Block devices.
    let field = "spec.blockDeviceMappings";
    if spec.block_device_mappings.len() > MAX_BLOCK_DEVICE_MAPPINGS {
        errs.push(field, "must have at most 50 items");
    }
    if spec
        .block_device_mappings
        .iter()
        .filter(|b| b.root_volume)
        .count()
        > 1
    {
        errs.push(
            field,
            "must have only one blockDeviceMappings with rootVolume",
        );
    }
    for (i, bdm) in spec.block_device_mappings.iter().enumerate() {
        if let Some(ebs) = &bdm.ebs
            && ebs.snapshot_id.is_none()
            && ebs.volume_size.is_none()
        {
            errs.push(
                format!("{field}[{i}].ebs"),
                "snapshotID or volumeSize must be defined",
            );
        }
    }

    // Metadata options.
    if let Some(md) = &spec.metadata_options {
        let field = "spec.metadataOptions";
        let check = |errs: &mut Errors, name: &str, value: &Option<String>, allowed: &[&str]| {
            if let Some(v) = value
                && !allowed.contains(&v.as_str())
            {
                errs.push(
                    format!("{field}.{name}"),
                    format!("Unsupported value: {v:?}: supported values: {allowed:?}"),
                );
            }
        };
        check(
            &mut errs,
            "httpEndpoint",
            &md.http_endpoint,
            &["enabled", "disabled"],
        );
        check(
            &mut errs,
            "httpProtocolIPv6",
            &md.http_protocol_ipv6,
            &["enabled", "disabled"],
        );
        check(
            &mut errs,
            "httpTokens",
            &md.http_tokens,
            &["required", "optional"],
        );
        if let Some(hops) = md.http_put_response_hop_limit
            && !(1..=64).contains(&hops)
        {
            errs.push(
                format!("{field}.httpPutResponseHopLimit"),
                "must be between 1 and 64",
            );
        }
    }

    if errs.list.is_empty() {
        Ok(())
    } else {
        Err(errs.list)
    }
}

fn validate_ami_terms(errs: &mut Errors, nc: &EC2NodeClass) {
    let spec = &nc.spec;
    let field = "spec.amiSelectorTerms";
    if spec.ami_selector_terms.is_empty() {
        errs.push(field, "should have at least 1 items");
    }
    if spec.ami_selector_terms.len() > MAX_TERMS {
        errs.push(field, "must have at most 30 items");
    }
    let mut alias_family: Option<AmiFamily> = None;
    for (i, term) in spec.ami_selector_terms.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let tags = !term.tags.is_empty();
        let (id, name, owner) = (term.id.is_some(), term.name.is_some(), term.owner.is_some());
        if term.alias.is_none() && !tags && !id && !name && term.ssm_parameter.is_none() {
            errs.push(
                &f,
                "expected at least one, got none, ['tags', 'id', 'name', 'alias', 'ssmParameter']",
            );
        }
        if id && (term.alias.is_some() || tags || name || owner) {
            errs.push(
                &f,
                "'id' is mutually exclusive, cannot be set with a combination of other fields in \
                 amiSelectorTerms",
            );
        }
        if let Some(alias) = &term.alias {
            if tags || id || name || owner {
                errs.push(
                    &f,
                    "'alias' is mutually exclusive, cannot be set with a combination of other \
                     fields in amiSelectorTerms",
                );
            }
            if alias.len() > MAX_ALIAS_LEN {
                errs.push(format!("{f}.alias"), "may not be longer than 30");
            }
            match Alias::parse(alias) {
                Ok(a) => alias_family = Some(a.family),
                Err(message) => errs.push(format!("{f}.alias"), message),
            }
        }
        if let Some(id) = &term.id
            && !matches_id_pattern(id, "ami-")
        {
            errs.push(format!("{f}.id"), "must match ami-[0-9a-z]+");
        }
        check_selector_tags(errs, &f, &term.tags);
    }
    let has_alias = spec.ami_selector_terms.iter().any(|t| t.alias.is_some());
    if has_alias && spec.ami_selector_terms.len() != 1 {
        errs.push(
            field,
            "'alias' is mutually exclusive, cannot be set with a combination of other \
             amiSelectorTerms",
        );
    }
    match (spec.ami_family, alias_family) {
        (None, None) if !has_alias => errs.push(
            "spec",
            "must specify amiFamily if amiSelectorTerms does not contain an alias",
        ),
        (Some(family), Some(alias)) if family != alias && family != AmiFamily::Custom => {
            errs.push(
                "spec.amiFamily",
                format!(
                    "if set, amiFamily must be '{alias}' or 'Custom' when using an {alias} alias"
                ),
            );
        }
        _ => {}
    }
}

fn validate_kubelet(errs: &mut Errors, k: &KubeletConfiguration) {
    let field = "spec.kubelet";
    for (name, map) in [
        ("systemReserved", &k.system_reserved),
        ("kubeReserved", &k.kube_reserved),
    ] {
        for (key, value) in map {
            if !SUPPORTED_RESERVED_RESOURCES.contains(&key.as_str()) {
                errs.push(
                    format!("{field}.{name}"),
                    format!("valid keys for {name} are ['cpu','memory','ephemeral-storage','pid']"),
                );
            }
            if value.0.starts_with('-') {
                errs.push(
                    format!("{field}.{name}"),
                    format!("{name} value cannot be a negative resource quantity"),
                );
            }
        }
    }
    let signals = [
        ("evictionHard", k.eviction_hard.keys().collect::<Vec<_>>()),
        ("evictionSoft", k.eviction_soft.keys().collect()),
        (
            "evictionSoftGracePeriod",
            k.eviction_soft_grace_period.keys().collect(),
        ),
    ];
    for (name, keys) in signals {
        if keys
            .iter()
            .any(|key| !SUPPORTED_EVICTION_SIGNALS.contains(&key.as_str()))
        {
            errs.push(
                format!("{field}.{name}"),
                format!(
                    "valid keys for {name} are ['memory.available','nodefs.available',\
                     'nodefs.inodesFree','imagefs.available','imagefs.inodesFree','pid.available']"
                ),
            );
        }
    }
    if k.eviction_soft
        .keys()
        .any(|s| !k.eviction_soft_grace_period.contains_key(s))
    {
        errs.push(
            field,
            "evictionSoft OwnerKey does not have a matching evictionSoftGracePeriod",
        );
    }
    if k.eviction_soft_grace_period
        .keys()
        .any(|s| !k.eviction_soft.contains_key(s))
    {
        errs.push(
            field,
            "evictionSoftGracePeriod OwnerKey does not have a matching evictionSoft",
        );
    }
    if let (Some(high), Some(low)) = (
        k.image_gc_high_threshold_percent,
        k.image_gc_low_threshold_percent,
    ) && high <= low
    {
        errs.push(
            field,
            "imageGCHighThresholdPercent must be greater than imageGCLowThresholdPercent",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::nodeclass::{
        AmiSelectorTerm, BlockDevice, BlockDeviceMapping, EC2NodeClassSpec,
        SecurityGroupSelectorTerm, SubnetSelectorTerm,
    };
    use std::collections::BTreeMap;

    fn tags(k: &str, v: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(k.to_string(), v.to_string())])
    }

    fn valid() -> EC2NodeClass {
        EC2NodeClass::new(
            "default",
            EC2NodeClassSpec {
                subnet_selector_terms: vec![SubnetSelectorTerm {
                    tags: tags("karpenter.sh/discovery", "avlos-stg"),
                    id: None,
                }],
                security_group_selector_terms: vec![SecurityGroupSelectorTerm {
                    id: Some("sg-0123".into()),
                    ..Default::default()
                }],
                ami_selector_terms: vec![AmiSelectorTerm {
                    alias: Some("al2023@latest".into()),
                    ..Default::default()
                }],
                role: Some("KarpenterNodeRole".into()),
                ..Default::default()
            },
        )
    }

    fn messages(nc: &EC2NodeClass) -> Vec<String> {
        match validate_ec2_node_class(nc) {
            Ok(()) => vec![],
            Err(errs) => errs.into_iter().map(|e| e.message).collect(),
        }
    }

    /// True when some error message contains `needle`; prints them all when none does.
    fn has(nc: &EC2NodeClass, needle: &str) -> bool {
        let msgs = messages(nc);
        let found = msgs.iter().any(|m| m.contains(needle));
        if !found {
            eprintln!("{needle:?} not in {msgs:?}");
        }
        found
    }

    #[test]
    fn a_valid_node_class_passes() {
        assert_eq!(messages(&valid()), Vec::<String>::new());
    }

    #[test]
    fn selector_terms_are_checked() {
        let mut nc = valid();
        nc.spec.subnet_selector_terms.clear();
        nc.spec.security_group_selector_terms.clear();
        assert!(has(&nc, "subnetSelectorTerms cannot be empty"));
        assert!(has(&nc, "securityGroupSelectorTerms cannot be empty"));

        let mut nc = valid();
        nc.spec.subnet_selector_terms = vec![SubnetSelectorTerm {
            tags: tags("a", "b"),
            id: Some("subnet-1".into()),
        }];
        assert!(has(&nc, "'id' is mutually exclusive"));
        nc.spec.subnet_selector_terms = vec![SubnetSelectorTerm::default()];
        assert!(has(&nc, "expected at least one, got none, ['tags', 'id']"));
        nc.spec.subnet_selector_terms = vec![SubnetSelectorTerm {
            tags: tags("a", ""),
            id: None,
        }];
        assert!(has(&nc, "empty tag keys or values"));

        let mut nc = valid();
        nc.spec.security_group_selector_terms = vec![SecurityGroupSelectorTerm {
            tags: tags("a", "b"),
            name: Some("web".into()),
            id: None,
        }];
        assert!(has(&nc, "'name' is mutually exclusive"));
        nc.spec.security_group_selector_terms = vec![SecurityGroupSelectorTerm {
            id: Some("group-1".into()),
            ..Default::default()
        }];
        assert!(has(&nc, "sg-[0-9a-z]+"));
    }

    #[test]
    fn alias_rules() {
        let mut nc = valid();
        nc.spec.ami_selector_terms[0].alias = Some("al2023".into());
        assert!(has(&nc, "must match the format 'family@version'"));
        nc.spec.ami_selector_terms[0].alias = Some("ubuntu@latest".into());
        assert!(has(&nc, "family is not supported"));
        nc.spec.ami_selector_terms[0].alias = Some("al2023@latest".into());
        nc.spec.ami_selector_terms[0].tags = tags("a", "b");
        assert!(has(
            &nc,
            "'alias' is mutually exclusive, cannot be set with a combination of other fields"
        ));

        let mut nc = valid();
        nc.spec.ami_selector_terms.push(AmiSelectorTerm {
            id: Some("ami-1".into()),
            ..Default::default()
        });
        assert!(has(&nc, "combination of other amiSelectorTerms"));

        let mut nc = valid();
        nc.spec.ami_family = Some(AmiFamily::Bottlerocket);
        assert!(has(&nc, "amiFamily must be 'AL2023' or 'Custom'"));
        nc.spec.ami_family = Some(AmiFamily::Custom);
        assert_eq!(messages(&nc), Vec::<String>::new());

        let mut nc = valid();
        nc.spec.ami_selector_terms = vec![AmiSelectorTerm {
            id: Some("ami-0abc".into()),
            ..Default::default()
        }];
        assert!(has(&nc, "must specify amiFamily"));
        nc.spec.ami_family = Some(AmiFamily::Al2);
        assert_eq!(messages(&nc), Vec::<String>::new());
        nc.spec.ami_selector_terms.clear();
        assert!(has(&nc, "at least 1"));
    }

    #[test]
    fn role_xor_instance_profile_and_restricted_tags() {
        let mut nc = valid();
        nc.spec.instance_profile = Some("profile".into());
        assert!(has(&nc, "exactly one of ['role', 'instanceProfile']"));
        nc.spec.role = None;
        assert_eq!(messages(&nc), Vec::<String>::new());
        nc.spec.instance_profile = None;
        assert!(has(&nc, "exactly one of"));

        for key in [
            "kubernetes.io/cluster/avlos-stg",
            "karpenter.sh/nodepool",
            "karpenter.sh/nodeclaim",
            "karpenter.k8s.aws/ec2nodeclass",
            "eks:eks-cluster-name",
        ] {
            let mut nc = valid();
            nc.spec.tags = tags(key, "x");
            assert!(has(&nc, "restricted tag"), "{key}");
        }
        let mut nc = valid();
        nc.spec.tags = tags("team", "platform");
        assert_eq!(messages(&nc), Vec::<String>::new());
    }

    #[test]
    fn kubelet_and_block_devices() {
        let mut nc = valid();
        let mut k = KubeletConfiguration {
            image_gc_high_threshold_percent: Some(50),
            image_gc_low_threshold_percent: Some(60),
            ..Default::default()
        };
        k.eviction_soft
            .insert("memory.available".into(), "500Mi".into());
        k.eviction_hard.insert("memory.free".into(), "1Gi".into());
        nc.spec.kubelet = Some(k);
        assert!(has(&nc, "imageGCHighThresholdPercent must be greater"));
        assert!(has(&nc, "does not have a matching evictionSoftGracePeriod"));
        assert!(has(&nc, "valid keys for evictionHard"));

        let mut nc = valid();
        let root = BlockDeviceMapping {
            device_name: Some("/dev/xvda".into()),
            ebs: Some(BlockDevice::default()),
            root_volume: true,
        };
        nc.spec.block_device_mappings = vec![root.clone(), root];
        assert!(has(&nc, "only one blockDeviceMappings with rootVolume"));
        assert!(has(&nc, "snapshotID or volumeSize must be defined"));
    }
}
