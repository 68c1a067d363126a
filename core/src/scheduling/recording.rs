//! Recording placed pods into topology counts.

use super::preferences::PodState;
use super::solver::Solver;
use super::topology::GroupKind;
use crate::labels;

impl Solver<'_> {
    /// Adds the pod to the counts of every group that selects it, and to the owner counts of
    /// its own required anti-affinity groups.
    pub(crate) fn record(&mut self, state: &PodState, domain_of: impl Fn(usize) -> Option<u32>) {
        // Without groups there is nothing to count (and the pod need not be read).
        if self.topo.groups.is_empty() {
            return;
        }
        let pod = &self.snap.pods[state.pod];
        for &g in self
            .counted_in
            .get(state.pod)
            .map_or(&[][..], Vec::as_slice)
        {
            let t = self.topo.groups[g].table;
            let d = domain_of(t);
            if let Some(d) = d {
                self.topo.groups[g].record(d);
            }
        }
        let owned = self
            .topo
            .owned_anti_affinity_groups(pod, self.snap.namespace_labels);
        for r in owned {
            let t = self.topo.groups[r.group].table;
            let d = domain_of(t);
            if let Some(d) = d {
                self.topo.groups[r.group].record_owner(d);
                self.topo.groups[r.group].owners += 1;
            }
        }
    }

    pub(crate) fn record_on_claim(&mut self, ci: usize, state: &PodState) {
        let pod = &self.snap.pods[state.pod];
        let claim = &self.claims[ci];
        let mut fixed: Vec<Option<u32>> = Vec::with_capacity(self.topo.tables.len());
        let mut possible: Vec<Vec<u32>> = Vec::with_capacity(self.topo.tables.len());
        for table in &self.topo.tables {
            if table.key == labels::HOSTNAME {
                fixed.push(claim.host_domain);
                possible.push(claim.host_domain.into_iter().collect());
                continue;
            }
            let req = claim.reqs.get_or_any(&table.key);
            let ids: Vec<u32> = (0..table.len() as u32)
                .filter(|&d| req.has(&table.names[d as usize]))
                .collect();
            fixed.push(if ids.len() == 1 && !req.is_complement() {
                Some(ids[0])
            } else {
                None
            });
            possible.push(ids);
        }
        for &g in self
            .counted_in
            .get(state.pod)
            .map_or(&[][..], Vec::as_slice)
        {
            let group = &mut self.topo.groups[g];
            match fixed[group.table] {
                Some(d) => group.record(d),
                None if group.kind == GroupKind::AntiAffinity => {
                    // Unknown domain: block every domain the node could land in.
                    for &d in &possible[group.table] {
                        group.record(d);
                    }
                }
                None => *group.claim_counts.entry(ci).or_insert(0) += 1,
            }
        }
        let owned = self
            .topo
            .owned_anti_affinity_groups(pod, self.snap.namespace_labels);
        for r in owned {
            let group = &mut self.topo.groups[r.group];
            group.owners += 1;
            match fixed[group.table] {
                Some(d) => group.record_owner(d),
                None => {
                    for &d in &possible[group.table] {
                        group.record_owner(d);
                    }
                }
            }
        }
    }

    /// When a claim's domain for a key becomes known, the pods counted against the claim
    /// move to that domain.
    pub(crate) fn migrate_claim_counts(&mut self, ci: usize, table: usize, domain: u32) {
        for group in &mut self.topo.groups {
            if group.table != table {
                continue;
            }
            if let Some(n) = group.claim_counts.remove(&ci) {
                for _ in 0..n {
                    group.record(domain);
                }
            }
        }
    }
}
