//! Static-drift hashes: the NodePool template hash Karpenter keeps in
//! [`NODE_POOL_HASH_ANNOTATION_KEY`](super::NODE_POOL_HASH_ANNOTATION_KEY) on the pool and on
//! every NodeClaim made from it. A claim whose hash differs from its pool's (same hash version)
//! is `NodePoolDrifted`.
//!
//! The hash is ours, not Karpenter's: Karpenter hashes Go structs with `hashstructure`
//! (version `v3`), which we cannot reproduce bit for bit. So our annotations carry our own
//! version, [`NODE_POOL_HASH_VERSION`]; a claim made by Karpenter carries `v3`, versions differ,
//! and such claims never drift statically (the hash controller rewrites their annotations to
//! ours unless they are already drifted, as Karpenter does after an upgrade that changes the
//! algorithm). The same canonical form ([`canonical_hash`]) serves the provider node classes.
//!
//! Canonical form, as Karpenter's `hashstructure` options (`SlicesAsSets`, `IgnoreZeroValue`,
//! `ZeroNil`): lists are sets (order does not matter), and zero values (`null`, `false`, `0`,
//! `""`, empty lists and maps) are dropped, so an absent field hashes as an empty one. The
//! digest is FNV-1a 64 over the canonical JSON text, printed in decimal: stable across runs,
//! processes and platforms.

use serde_json::Value;

use super::NodePool;

/// Our NodePool hash algorithm's version (Karpenter v1.4 writes `v3`).
pub const NODE_POOL_HASH_VERSION: &str = "rs1";

/// The hash of a NodePool's `spec.template`: labels, annotations, taints, startup taints,
/// `nodeClassRef`, `expireAfter` and `terminationGracePeriod`. Requirements (drift is checked
/// against them directly) and everything outside the template (weight, limits, disruption)
/// are left out, so changing them never drifts a node.
pub fn nodepool_hash(np: &NodePool) -> String {
    let t = &np.spec.template;
    let s = &t.spec;
    let fields = serde_json::json!({
        "labels": t.metadata.labels,
        "annotations": t.metadata.annotations,
        "taints": s.taints,
        "startupTaints": s.startup_taints,
        "nodeClassRef": s.node_class_ref,
        "expireAfter": s.expire_after,
        "terminationGracePeriod": s.termination_grace_period,
    });
    canonical_hash(&fields)
}

/// The hash of a JSON value in the canonical form described in the module documentation.
pub fn canonical_hash(value: &Value) -> String {
    let mut text = String::new();
    if let Some(v) = canonical(value) {
        write_canonical(&v, &mut text);
    }
    fnv1a64(text.as_bytes()).to_string()
}

/// `value` without its zero values, or `None` when it is zero itself.
fn canonical(value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Bool(b) => b.then_some(Value::Bool(true)),
        Value::Number(n) => (n.as_f64() != Some(0.0)).then(|| value.clone()),
        Value::String(s) => (!s.is_empty()).then(|| value.clone()),
        Value::Array(items) => {
            let items: Vec<Value> = items.iter().filter_map(canonical).collect();
            (!items.is_empty()).then_some(Value::Array(items))
        }
        Value::Object(map) => {
            let map: serde_json::Map<String, Value> = map
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), canonical(v)?)))
                .collect();
            (!map.is_empty()).then_some(Value::Object(map))
        }
    }
}

/// Writes `value` as JSON with object keys sorted and list items sorted by their own text (a
/// list is a set), whatever the map type behind `serde_json`.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            let mut texts: Vec<String> = items
                .iter()
                .map(|v| {
                    let mut s = String::new();
                    write_canonical(v, &mut s);
                    s
                })
                .collect();
            texts.sort();
            texts.dedup();
            out.push('[');
            out.push_str(&texts.join(","));
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// FNV-1a, 64 bits: a fixed, seedless hash (std's `DefaultHasher` is randomly seeded).
fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

#[cfg(test)]
#[path = "hash_tests.rs"]
mod tests;
