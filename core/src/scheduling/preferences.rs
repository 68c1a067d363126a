//! A pending pod's scheduling state: the constraints honoured right now, and Karpenter's order
//! for dropping preferences one at a time when the pod does not fit.

use crate::requirements::Requirements;
use crate::snapshot::{
    Pod, PodAffinityTerm, TaintEffect, Toleration, TopologySpreadConstraint, WhenUnsatisfiable,
};

/// The constraints of one pod as currently honoured.
#[derive(Clone, Debug)]
pub(crate) struct PodState {
    /// Index into `Snapshot::pods`.
    pub pod: usize,
    /// Node selector and volume requirements: never relaxed.
    strict: Requirements,
    /// Required node affinity terms still to try (OR); the first is in force.
    required_terms: Vec<Requirements>,
    /// Preferred node affinity, heaviest first; the first is in force.
    preferred_node: Vec<(i32, Requirements)>,
    /// Preferred pod affinity still honoured, heaviest first.
    pub preferred_affinity: Vec<(i32, PodAffinityTerm)>,
    /// Preferred pod anti-affinity still honoured, heaviest first.
    pub preferred_anti: Vec<(i32, PodAffinityTerm)>,
    /// Topology spread constraints still honoured.
    pub spread: Vec<TopologySpreadConstraint>,
    /// Pod tolerations, plus a PreferNoSchedule wildcard once relaxed that far.
    pub tolerations: Vec<Toleration>,
    /// Requirements in force: strict ∩ first required term ∩ heaviest preferred term.
    pub requirements: Requirements,
    /// What has been dropped so far, in order.
    pub relaxed: Vec<String>,
}

impl PodState {
    pub fn new(index: usize, pod: &Pod) -> PodState {
        let mut strict = pod.node_selector.clone();
        strict.add_all(&pod.volume_requirements);
        let mut preferred_node = pod.preferred_node_affinity.clone();
        preferred_node.sort_by_key(|p| std::cmp::Reverse(p.0));
        let mut preferred_affinity = pod.preferred_pod_affinity.clone();
        preferred_affinity.sort_by_key(|p| std::cmp::Reverse(p.0));
        let mut preferred_anti = pod.preferred_pod_anti_affinity.clone();
        preferred_anti.sort_by_key(|p| std::cmp::Reverse(p.0));
        let mut state = PodState {
            pod: index,
            strict,
            required_terms: pod.required_node_affinity.clone(),
            preferred_node,
            preferred_affinity,
            preferred_anti,
            spread: pod.topology_spread.clone(),
            tolerations: pod.tolerations.clone(),
            requirements: Requirements::new(),
            relaxed: Vec::new(),
        };
        state.recompute();
        state
    }

    /// [`PodState::new`] of a pod with no constraints at all (no node selector, volume or
    /// node-affinity requirements, pod (anti-)affinity, spread or tolerations), without reading
    /// the pod.
    pub fn plain(index: usize) -> PodState {
        PodState {
            pod: index,
            strict: Requirements::new(),
            required_terms: Vec::new(),
            preferred_node: Vec::new(),
            preferred_affinity: Vec::new(),
            preferred_anti: Vec::new(),
            spread: Vec::new(),
            tolerations: Vec::new(),
            requirements: Requirements::new(),
            relaxed: Vec::new(),
        }
    }

    fn recompute(&mut self) {
        let mut reqs = self.strict.clone();
        if let Some((_, term)) = self.preferred_node.first() {
            reqs.add_all(term);
        }
        if let Some(term) = self.required_terms.first() {
            reqs.add_all(term);
        }
        self.requirements = reqs;
    }

    /// Drops the next preference in Karpenter's order. Returns false when nothing is left to
    /// relax (the pod's constraints are now only what it strictly requires).
    pub fn relax(&mut self) -> bool {
        let note = if self.required_terms.len() > 1 {
            let term = self.required_terms.remove(0);
            format!("required node affinity term ({term}) did not fit; trying the next term")
        } else if !self.preferred_affinity.is_empty() {
            let (w, t) = self.preferred_affinity.remove(0);
            format!(
                "dropped preferred pod affinity (weight {w}, {})",
                t.topology_key
            )
        } else if !self.preferred_anti.is_empty() {
            let (w, t) = self.preferred_anti.remove(0);
            format!(
                "dropped preferred pod anti-affinity (weight {w}, {})",
                t.topology_key
            )
        } else if !self.preferred_node.is_empty() {
            let (w, t) = self.preferred_node.remove(0);
            format!("dropped preferred node affinity (weight {w}: {t})")
        } else if let Some(i) = self
            .spread
            .iter()
            .position(|c| c.when_unsatisfiable == WhenUnsatisfiable::ScheduleAnyway)
        {
            let c = self.spread.remove(i);
            format!(
                "dropped topology spread on {} (ScheduleAnyway, maxSkew {})",
                c.topology_key, c.max_skew
            )
        } else if !self.tolerates_prefer_no_schedule() {
            self.tolerations.push(Toleration {
                key: String::new(),
                exists: true,
                value: String::new(),
                effect: Some(TaintEffect::PreferNoSchedule),
            });
            "tolerated PreferNoSchedule taints".to_string()
        } else {
            return false;
        };
        self.relaxed.push(note);
        self.recompute();
        true
    }

    fn tolerates_prefer_no_schedule(&self) -> bool {
        self.tolerations.iter().any(|t| {
            t.key.is_empty() && t.exists && t.effect == Some(TaintEffect::PreferNoSchedule)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels;
    use crate::requirements::Requirement;
    use crate::resources::Resources;
    use crate::snapshot::LabelSelector;

    fn zone(z: &str) -> Requirements {
        let mut r = Requirements::new();
        r.add(labels::ZONE, Requirement::single(z));
        r
    }

    #[test]
    fn relaxes_in_karpenters_order() {
        let mut pod = Pod::new("default", "p", Resources::ZERO);
        pod.required_node_affinity = vec![zone("a"), zone("b")];
        pod.preferred_node_affinity = vec![(1, zone("c")), (50, zone("d"))];
        let term = PodAffinityTerm {
            topology_key: labels::ZONE.into(),
            selector: LabelSelector::default(),
            namespaces: vec![],
            namespace_selector: None,
        };
        pod.preferred_pod_affinity = vec![(10, term.clone())];
        pod.preferred_pod_anti_affinity = vec![(10, term)];
        pod.topology_spread = vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: labels::ZONE.into(),
            when_unsatisfiable: WhenUnsatisfiable::ScheduleAnyway,
            selector: LabelSelector::default(),
            min_domains: None,
        }];
        let mut s = PodState::new(0, &pod);
        // Heaviest preferred term (d) and first required term (a) are in force: they conflict.
        assert!(s.requirements.get(labels::ZONE).unwrap().is_empty());
        let mut steps = Vec::new();
        while s.relax() {
            steps.push(s.relaxed.last().unwrap().clone());
        }
        assert_eq!(steps.len(), 7, "{steps:#?}");
        assert!(steps[0].starts_with("required node affinity term"));
        assert!(steps[1].starts_with("dropped preferred pod affinity"));
        assert!(steps[2].starts_with("dropped preferred pod anti-affinity"));
        assert!(steps[3].contains("weight 50"));
        assert!(steps[4].contains("weight 1"));
        assert!(steps[5].contains("ScheduleAnyway"));
        assert_eq!(steps[6], "tolerated PreferNoSchedule taints");
        // Only the last required term remains.
        assert!(s.requirements.get(labels::ZONE).unwrap().has("b"));
    }
}
