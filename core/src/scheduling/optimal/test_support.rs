//! Reference solutions by brute force, and instances, shared by the tests of this module.

use std::collections::HashMap;

use proptest::prelude::*;

use super::simplex::{CoveringLp, SimplexOptions};
use super::{BinType, Kind};
use crate::resources::{CPU, MEMORY, PODS, Resources};

/// Requests or allocatable of `cpu` millicores, `mem` MiB and `pods` pods.
pub fn res(cpu: i64, mem_mib: i64, pods: i64) -> Resources {
    Resources::from_pairs(&[(CPU, cpu), (MEMORY, mem_mib << 20), (PODS, pods)])
}

/// A kind of `count` pods of `cpu` millicores and `mem` MiB (one pods slot each).
pub fn kind(cpu: i64, mem_mib: i64, count: u32) -> Kind {
    Kind {
        requests: res(cpu, mem_mib, 1),
        count,
    }
}

/// A type with this allocatable and price.
pub fn bin(cpu: i64, mem_mib: i64, pods: i64, price: f64) -> BinType {
    BinType {
        allocatable: res(cpu, mem_mib, pods),
        price,
    }
}

/// Summed requests of `counts` pods of each kind.
pub fn load(kinds: &[Kind], counts: &[u32]) -> Resources {
    let mut total = Resources::ZERO;
    for (k, &c) in kinds.iter().zip(counts) {
        for _ in 0..c {
            total += k.requests;
        }
    }
    total
}

/// Every non-empty configuration of one node of `allocatable`, at most `count` of each kind.
pub fn configurations(kinds: &[Kind], allocatable: &Resources) -> Vec<Vec<u32>> {
    let mut all = Vec::new();
    let mut counts = vec![0u32; kinds.len()];
    loop {
        if counts.iter().any(|&c| c > 0) && load(kinds, &counts).fits_in(allocatable) {
            all.push(counts.clone());
        }
        // Odometer over 0..=count of each kind.
        let mut i = 0;
        loop {
            if i == kinds.len() {
                return all;
            }
            if counts[i] < kinds[i].count {
                counts[i] += 1;
                break;
            }
            counts[i] = 0;
            i += 1;
        }
    }
}

/// The configuration LP over every configuration of every type, solved in one shot, with
/// `node_cost` added to the prices. Kinds that fit no type (or have no pods) are left out.
pub fn full_lp(kinds: &[Kind], types: &[BinType], node_cost: f64) -> f64 {
    let rows: Vec<usize> = (0..kinds.len())
        .filter(|&i| {
            kinds[i].count > 0
                && types
                    .iter()
                    .any(|t| kinds[i].requests.fits_in(&t.allocatable))
        })
        .collect();
    let sub: Vec<Kind> = rows.iter().map(|&i| kinds[i].clone()).collect();
    let demand: Vec<f64> = sub.iter().map(|k| f64::from(k.count)).collect();
    let mut lp = CoveringLp::new(&demand, SimplexOptions::default()).unwrap();
    for t in types {
        for config in configurations(&sub, &t.allocatable) {
            let entries: Vec<(usize, f64)> = config
                .iter()
                .enumerate()
                .map(|(r, &k)| (r, f64::from(k)))
                .collect();
            lp.add_column(t.price + node_cost, &entries).unwrap();
        }
    }
    lp.solve().unwrap();
    lp.objective()
}

/// The cheapest fleet placing every placeable pod exactly once, by dynamic programming over
/// the remaining counts (tiny instances only).
pub fn best_fleet(kinds: &[Kind], types: &[BinType]) -> f64 {
    let start: Vec<u32> = kinds
        .iter()
        .map(|k| {
            if types.iter().any(|t| k.requests.fits_in(&t.allocatable)) {
                k.count
            } else {
                0
            }
        })
        .collect();
    let configs: Vec<(f64, Vec<u32>)> = types
        .iter()
        .flat_map(|t| {
            configurations(kinds, &t.allocatable)
                .into_iter()
                .map(move |c| (t.price, c))
        })
        .collect();
    let mut memo = HashMap::new();
    cheapest(&start, &configs, &mut memo)
}

fn cheapest(left: &[u32], configs: &[(f64, Vec<u32>)], memo: &mut HashMap<Vec<u32>, f64>) -> f64 {
    if left.iter().all(|&c| c == 0) {
        return 0.0;
    }
    if let Some(&v) = memo.get(left) {
        return v;
    }
    // The first kind with pods left must go on some node: branch on that node only.
    let first = left.iter().position(|&c| c > 0).unwrap();
    let mut best = f64::INFINITY;
    for (price, config) in configs {
        if config[first] == 0 || config.iter().zip(left).any(|(c, l)| c > l) {
            continue;
        }
        let rest: Vec<u32> = left.iter().zip(config).map(|(l, c)| l - c).collect();
        best = best.min(price + cheapest(&rest, configs, memo));
    }
    memo.insert(left.to_vec(), best);
    best
}

/// Tiny random instances: 1–3 kinds of 0–3 pods, 1–3 types, CPU and memory in small units
/// (one "unit" is 250m / 256Mi) and a pods limit.
pub fn tiny_instance() -> impl Strategy<Value = (Vec<Kind>, Vec<BinType>)> {
    let kinds = prop::collection::vec((1i64..=4, 1i64..=4, 0u32..=3), 1..=3).prop_map(|v| {
        v.into_iter()
            .map(|(c, m, n)| kind(250 * c, 256 * m, n))
            .collect::<Vec<_>>()
    });
    let types =
        prop::collection::vec((1i64..=8, 1i64..=8, 1i64..=5, 1u32..=40), 1..=3).prop_map(|v| {
            v.into_iter()
                .map(|(c, m, p, price)| bin(250 * c, 256 * m, p, f64::from(price) / 8.0))
                .collect::<Vec<_>>()
        });
    (kinds, types)
}

/// The medium instance of the brief: 30 kinds (5 CPU × 6 memory sizes), 1000 pods, and 20
/// made-up types in compute / general / memory shapes (2, 4 and 8 GiB per vCPU) at roughly AWS
/// on-demand prices, with kubelet reservations and a DaemonSet's requests taken off.
pub fn medium_instance() -> (Vec<Kind>, Vec<BinType>) {
    const CPUS: [i64; 5] = [100, 250, 500, 1000, 1500];
    const MEMS: [i64; 6] = [100, 256, 512, 1024, 2048, 4096];
    let mut kinds = Vec::new();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut weights = Vec::new();
    for _ in 0..CPUS.len() * MEMS.len() {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        weights.push(1 + (seed >> 59)); // 1..=32
    }
    let total: u64 = weights.iter().sum();
    let mut counts: Vec<u32> = weights.iter().map(|w| (w * 1000 / total) as u32).collect();
    let placed: u32 = counts.iter().sum();
    counts[0] += 1000 - placed;
    for (i, &cpu) in CPUS.iter().enumerate() {
        for (j, &mem) in MEMS.iter().enumerate() {
            kinds.push(kind(cpu, mem, counts[i * MEMS.len() + j]));
        }
    }

    // (vCPUs, max pods); price per vCPU-hour by family and GiB per vCPU.
    const SIZES: [(i64, i64); 7] = [
        (2, 29),
        (4, 58),
        (8, 58),
        (16, 110),
        (32, 110),
        (48, 110),
        (64, 110),
    ];
    const FAMILIES: [(i64, f64); 3] = [(2, 0.0425), (4, 0.048), (8, 0.063)];
    let mut types = Vec::new();
    for (f, &(gib_per_cpu, per_cpu)) in FAMILIES.iter().enumerate() {
        for (s, &(vcpus, pods)) in SIZES.iter().enumerate() {
            // 20 types: the memory family stops at 48 vCPUs.
            if f == 2 && s == SIZES.len() - 1 {
                continue;
            }
            let mem_mib = vcpus * gib_per_cpu * 1024;
            let reserved_mib = 255 + 11 * pods + 100 + 200;
            let reserved_cpu = 70 + 10 * vcpus + 150;
            types.push(bin(
                vcpus * 1000 - reserved_cpu,
                mem_mib - reserved_mib,
                pods,
                per_cpu * vcpus as f64,
            ));
        }
    }
    (kinds, types)
}
