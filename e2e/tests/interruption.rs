//! Interruption through the real controller and moto's SQS (each test its own queue; the
//! controller's calls go through its fault proxy): every kind of message drains and terminates
//! its node within a PDB while a rebalance recommendation only says so; a spot interruption is
//! handled well inside the two-minute notice and its replacement avoids the interrupted
//! offering; unreadable, unknown and foreign messages are deleted and counted; a missing or
//! deleted queue pauses interruption handling but not provisioning, and a re-created queue is
//! picked up; a burst of 1,000 messages is drained. Needs the e2e bed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use karpenter_core::api::NodeClaim;
use karpenter_e2e::controller::{ControllerProcess, install_crds};
use karpenter_e2e::harness::*;
use karpenter_e2e::scenario::queue;
use karpenter_e2e::scenario::*;
use kube_client::ResourceExt;
use kube_client::api::Api;
use serde_json::{Value, json};

/// Consolidation kept out of the way: only interruption may move these nodes.
fn no_consolidation() -> Value {
    json!({"consolidationPolicy": "WhenEmpty", "consolidateAfter": "1h", "expireAfter": "720h"})
}

/// Pods of `app` never share a node.
fn one_per_node(app: &str) -> impl FnOnce(&mut Value) {
    let app = app.to_owned();
    move |spec| {
        spec["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchLabels": {"app": app}},
            "topologyKey": "kubernetes.io/hostname",
        }]}});
    }
}

fn node_of(c: &NodeClaim) -> Option<String> {
    c.status.as_ref().and_then(|s| s.node_name.clone())
}

fn offering(c: &NodeClaim) -> (String, String, String) {
    let l = |k: &str| label(c, k).unwrap_or("").to_owned();
    (
        l(INSTANCE_TYPE),
        l("topology.kubernetes.io/zone"),
        l("karpenter.sh/capacity-type"),
    )
}

async fn metrics(controller: &ControllerProcess) -> String {
    controller.scrape_metrics().await.unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_interruption_kind_drains_its_node_but_a_rebalance_only_says_so() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("itkinds", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "itkinds");
        let sqs = queue::sqs(&ctx);
        let queue_name = format!("it-kinds-{}", &ctx.id[ctx.id.len() - 5..]);
        let url = queue::create_queue(&sqs, &queue_name).await;
        let controller =
            ControllerProcess::start(&ctx.env, "it-kinds", &[("INTERRUPTION_QUEUE", &queue_name)]);
        let _sim = ctx.start_sim(ctx.sim_config_for_tag("karpenter.sh/nodepool", &pool));
        with_teardown(&ctx, &[&pool], async {
            apply_pool(&ctx, &pool, &PoolSpec::staging(json!([])).with_disruption(no_consolidation())).await;
            deploy(&ctx, "web", Some(&pool), 6, json!({"cpu": "500m", "memory": "256Mi"}), one_per_node("web")).await;
            create_pdb(&ctx, "web", "web", json!({"maxUnavailable": 1})).await;
            eventually("6 web pods Running on 6 nodes", Duration::from_secs(180), || async {
                let pods = pods_of(&ctx, "web").await;
                (pods.iter().filter(|p| pod_running_ready(p)).count() == 6).then_some(())
            })
            .await;
            let claims = claims_of(&ctx, &pool).await;
            assert_eq!(claims.len(), 6);
            let instance = |c: &NodeClaim| instance_id(c).expect("launched claims have a provider id");

            // A rebalance recommendation for the first node: an event, nothing else.
            let kept = claims[0].clone();
            queue::send(&sqs, &url, &queue::rebalance(&instance(&kept))).await;
            eventually("the SpotRebalanceRecommendation event", Duration::from_secs(60), || async {
                let notes = event_notes(&ctx, None, "SpotRebalanceRecommendation", &kept.name_any()).await;
                (!notes.is_empty()).then_some(())
            })
            .await;

            // One message of every other kind, each for its own node, all at once.
            let doomed: Vec<(NodeClaim, &str, String)> = vec![
                (claims[1].clone(), "SpotInterrupted", queue::spot_interruption(&instance(&claims[1]))),
                (claims[2].clone(), "InstanceStopping", queue::state_change(&instance(&claims[2]), "stopping")),
                (claims[3].clone(), "InstanceTerminating", queue::state_change(&instance(&claims[3]), "shutting-down")),
                (claims[4].clone(), "InstanceUnhealthy", queue::scheduled_change(&[&instance(&claims[4]), "i-0000000000000dead"])),
                (claims[5].clone(), "CapacityReservationInstanceInterrupted", queue::capacity_reservation_interruption(&instance(&claims[5]))),
            ];
            let watch = PodWatch::start(&ctx);
            eventually("the pod watch sees 6 ready web pods", Duration::from_secs(30), || async {
                (watch.read(|l| l.ready.get("web").copied()) == Some(6)).then_some(())
            })
            .await;
            watch.arm();
            let bodies: Vec<String> = doomed.iter().map(|d| d.2.clone()).collect();
            queue::send_all(&sqs, &url, &bodies).await;
            let doomed_names: BTreeSet<String> = doomed.iter().map(|d| d.0.name_any()).collect();
            let doomed_nodes: BTreeSet<String> = doomed.iter().filter_map(|d| node_of(&d.0)).collect();
            let api: Api<NodeClaim> = Api::all(ctx.kube.clone());
            let took = time_until("the five interrupted claims gone and 6 web pods Running elsewhere", Duration::from_secs(300), || async {
                let all = claims_of(&ctx, &pool).await;
                if all.iter().any(|c| doomed_names.contains(&c.name_any())) {
                    return None;
                }
                let pods = pods_of(&ctx, "web").await;
                let elsewhere = pods
                    .iter()
                    .filter(|p| pod_running_ready(p))
                    .filter(|p| node_name(p).is_some_and(|n| !doomed_nodes.contains(n)))
                    .count();
                (elsewhere == 6).then_some(())
            })
            .await;
            for (claim, _, _) in &doomed {
                let id = instance(claim);
                eventually(&format!("instance {id} terminated"), Duration::from_secs(60), || async {
                    instance_gone(instance_state(&ctx, &id).await).then_some(())
                })
                .await;
            }
            let min_ready = watch.read(|l| l.min_ready.get("web").copied());
            let mut reasons = BTreeMap::new();
            for (claim, reason, _) in &doomed {
                let notes = event_notes(&ctx, None, reason, &claim.name_any()).await;
                let terminating = event_notes(&ctx, None, "TerminatingOnInterruption", &claim.name_any()).await;
                let expected = match *reason {
                    "SpotInterrupted" => "Spot interruption warning was triggered",
                    "InstanceStopping" => "Instance is stopping",
                    "InstanceTerminating" => "Instance is terminating",
                    "InstanceUnhealthy" => "An unhealthy warning was triggered for the instance",
                    _ => "Capacity reservation interruption warning was triggered",
                };
                assert_eq!(notes, [expected], "{reason} on {}", claim.name_any());
                assert_eq!(terminating, ["Interruption triggered termination for the NodeClaim"], "{}", claim.name_any());
                reasons.insert(claim.name_any(), *reason);
            }
            let still = api.get(&kept.name_any()).await.expect("the rebalanced claim is still there");
            assert!(still.metadata.deletion_timestamp.is_none(), "a rebalance recommendation deletes nothing");
            let text = metrics(&controller).await;
            for kind in ["spot_interrupted", "instance_stopped", "instance_terminated", "scheduled_change", "capacity_reservation_interrupted", "rebalance_recommendation"] {
                let label = format!("message_type=\"{kind}\"");
                assert_eq!(metric_sum(&text, "karpenter_interruption_received_messages_total", &[&label]), 1.0, "{kind}");
                let reason = format!("reason=\"{kind}\"");
                let disrupted = metric_sum(&text, "karpenter_nodeclaims_disrupted_total", &[&reason]);
                assert_eq!(disrupted, if kind == "rebalance_recommendation" { 0.0 } else { 1.0 }, "{kind}");
            }
            assert_eq!(metric_sum(&text, "karpenter_interruption_deleted_messages_total", &[]), 6.0);
            assert_eq!(queue::depth(&sqs, &url).await, Some(0));
            eprintln!(
                "interruption kinds: 5 nodes drained and replaced {:.1}s after the messages (fewest ready web pods {min_ready:?}, PDB maxUnavailable 1); events {reasons:?}",
                took.as_secs_f64()
            );
            assert!(min_ready >= Some(5), "the PDB allows one web pod down at a time: {min_ready:?}");
            controller.assert_no_panic();
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_spot_interruption_is_handled_inside_the_notice_and_the_replacement_avoids_the_offering()
{
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("itspot", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "itspot");
        let sqs = queue::sqs(&ctx);
        let queue_name = format!("it-spot-{}", &ctx.id[ctx.id.len() - 5..]);
        let url = queue::create_queue(&sqs, &queue_name).await;
        let controller =
            ControllerProcess::start(&ctx.env, "it-spot", &[("INTERRUPTION_QUEUE", &queue_name)]);
        let _sim = ctx.start_sim(ctx.sim_config_for_tag("karpenter.sh/nodepool", &pool));
        with_teardown(&ctx, &[&pool], async {
            // One instance type: the replacement has the same shape, so only the interrupted
            // offering being unavailable can send it to another zone (the first node went to
            // the cheapest spot zone, which would be picked again).
            let spot = PoolSpec::bare(json!([
                {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["t3a.medium"]},
                {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]},
                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
            ]))
            .with_disruption(no_consolidation());
            apply_pool(&ctx, &pool, &spot).await;
            deploy(&ctx, "svc", Some(&pool), 3, json!({"cpu": "500m", "memory": "512Mi"}), |_| {}).await;
            create_pdb(&ctx, "svc", "svc", json!({"maxUnavailable": 1})).await;
            let old = claim_holding(&ctx, &pool, "svc", 3).await;
            let old_offering = offering(&old);
            assert_eq!(old_offering.2, "spot");
            let old_node = node_of(&old).expect("registered");
            let id = instance_id(&old).expect("provider id");

            let sent = Instant::now();
            queue::send(&sqs, &url, &queue::spot_interruption(&id)).await;
            let replacement = eventually("a replacement node Ready", Duration::from_secs(120), || async {
                let claims = claims_of(&ctx, &pool).await;
                let new = claims.into_iter().find(|c| c.name_any() != old.name_any() && c.status.as_ref().is_some_and(|s| s.is_true("Ready")))?;
                let node = node_named(&ctx, &node_of(&new)?).await;
                fully_ready(&node).then_some(new)
            })
            .await;
            let to_ready = sent.elapsed();
            let to_running = time_until("all svc pods Running on other nodes", Duration::from_secs(120), || async {
                let pods = pods_of(&ctx, "svc").await;
                let moved = pods
                    .iter()
                    .filter(|p| pod_running_ready(p) && node_name(p).is_some_and(|n| n != old_node))
                    .count();
                (moved == 3).then_some(())
            })
            .await
                + to_ready;
            eventually("the interrupted instance terminated", Duration::from_secs(60), || async {
                instance_gone(instance_state(&ctx, &id).await).then_some(())
            })
            .await;
            let new_offering = offering(&replacement);
            eprintln!(
                "spot interruption: replacement node Ready {:.1}s and every pod Running again {:.1}s after the message (notice: 120 s); {old_offering:?} → {new_offering:?}",
                to_ready.as_secs_f64(),
                to_running.as_secs_f64()
            );
            assert_eq!(new_offering.0, "t3a.medium");
            assert_ne!(new_offering.1, old_offering.1, "the interrupted offering (its zone) is unavailable for 3 minutes");
            assert!(to_running < Duration::from_secs(120), "inside the two-minute notice: {to_running:?}");
            let notes = event_notes(&ctx, None, "SpotInterrupted", &old.name_any()).await;
            assert_eq!(notes, ["Spot interruption warning was triggered"]);
            let text = metrics(&controller).await;
            assert_eq!(metric_sum(&text, "karpenter_interruption_message_queue_duration_seconds_count", &[]), 1.0);
            controller.assert_no_panic();
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_queue_bad_messages_and_a_burst_never_stop_the_controller() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("itqueue", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "itqueue");
        let sqs = queue::sqs(&ctx);
        let queue_name = format!("it-queue-{}", &ctx.id[ctx.id.len() - 5..]);
        // The queue does not exist yet.
        let mut controller =
            ControllerProcess::start(&ctx.env, "it-queue", &[("INTERRUPTION_QUEUE", &queue_name)]);
        let _sim = ctx.start_sim(ctx.sim_config_for_tag("karpenter.sh/nodepool", &pool));
        with_teardown(&ctx, &[&pool], async {
            let missing = |text: &str| {
                metric_sum(text, "karpenter_interruption_queue_errors_total", &["error=\"queue_missing\""])
            };
            eventually("the missing queue reported", Duration::from_secs(60), || async {
                let text = metrics(&controller).await;
                (missing(&text) >= 1.0
                    && metric_sum(&text, "karpenter_interruption_queue_available", &[]) == 0.0)
                    .then_some(())
            })
            .await;
            // Provisioning goes on meanwhile.
            apply_pool(&ctx, &pool, &PoolSpec::staging(json!([])).with_disruption(no_consolidation())).await;
            deploy(&ctx, "one", Some(&pool), 1, json!({"cpu": "250m", "memory": "128Mi"}), |_| {}).await;
            claim_holding(&ctx, &pool, "one", 1).await;
            assert!(
                std::fs::read_to_string(&controller.log).unwrap_or_default().contains("settings.interruptionQueue"),
                "the log says what to fix"
            );

            // The queue appears: the controller finds it (backoff at most 30 s).
            let url = queue::create_queue(&sqs, &queue_name).await;
            let available = |text: &str| metric_sum(text, "karpenter_interruption_queue_available", &[]) == 1.0;
            let found = time_until("the queue picked up", Duration::from_secs(90), || async {
                available(&metrics(&controller).await).then_some(())
            })
            .await;

            // Unreadable, unknown and foreign messages are deleted and counted.
            for body in [
                "this is not json".to_owned(),
                queue::event("aws.autoscaling", "EC2 Instance Launch Successful", json!({})),
                queue::spot_interruption("i-0123456789abcdef0"),
            ] {
                queue::send(&sqs, &url, &body).await;
            }
            let deleted = |text: &str| metric_sum(text, "karpenter_interruption_deleted_messages_total", &[]);
            eventually("three bad messages deleted", Duration::from_secs(60), || async {
                let text = metrics(&controller).await;
                (deleted(&text) == 3.0).then_some(text)
            })
            .await;
            let text = metrics(&controller).await;
            assert_eq!(metric_sum(&text, "karpenter_interruption_received_messages_total", &["message_type=\"no_op\""]), 1.0);
            assert_eq!(metric_sum(&text, "karpenter_interruption_received_messages_total", &["message_type=\"spot_interrupted\""]), 1.0);
            assert_eq!(metric_sum(&text, "karpenter_interruption_received_messages_total", &[]), 2.0, "the unreadable one is not received");

            // A burst: 1,000 messages, mostly spot warnings for instances that are not ours.
            let bodies: Vec<String> = (0..1000)
                .map(|i| match i % 20 {
                    0 => "{\"truncated\": ".to_owned(),
                    1 => queue::state_change(&format!("i-{i:017x}"), "running"),
                    _ => queue::spot_interruption(&format!("i-{i:017x}")),
                })
                .collect();
            let burst_started = Instant::now();
            queue::send_all(&sqs, &url, &bodies).await;
            let sending = burst_started.elapsed();
            // moto is slow to take messages: much of the burst is drained while it arrives.
            let drained_while_sending = deleted(&metrics(&controller).await) - 3.0;
            let after_sending = time_until("1,000 messages drained", Duration::from_secs(300), || async {
                let text = metrics(&controller).await;
                (deleted(&text) >= 1003.0 && queue::depth(&sqs, &url).await == Some(0)).then_some(())
            })
            .await;
            let drained = burst_started.elapsed();
            let rate = 1000.0 / drained.as_secs_f64();
            let rate_after = (1000.0 - drained_while_sending) / after_sending.as_secs_f64();
            assert_eq!(claims_of(&ctx, &pool).await.len(), 1, "no claim of ours was touched");

            // The queue is deleted mid-run, then re-created.
            queue::delete_queue(&sqs, &url).await;
            let before = missing(&metrics(&controller).await);
            eventually("the deleted queue reported", Duration::from_secs(90), || async {
                let text = metrics(&controller).await;
                (missing(&text) > before && !available(&text)).then_some(())
            })
            .await;
            let url = queue::create_queue(&sqs, &queue_name).await;
            queue::send(&sqs, &url, &queue::spot_interruption("i-0fedcba987654321f")).await;
            let resumed = time_until("the re-created queue read", Duration::from_secs(90), || async {
                let text = metrics(&controller).await;
                (available(&text) && deleted(&text) >= 1004.0).then_some(())
            })
            .await;
            eprintln!(
                "interruption queue: found {:.1}s after it was created; burst of 1000 drained {:.1}s after the first was sent ({rate:.0} messages/s; sending took {:.1}s and {drained_while_sending} were drained meanwhile, the rest {:.1}s after: {rate_after:.0} messages/s); re-created queue read {:.1}s after it came back; controller memory: {}",
                found.as_secs_f64(),
                drained.as_secs_f64(),
                sending.as_secs_f64(),
                after_sending.as_secs_f64(),
                resumed.as_secs_f64(),
                controller.memory(),
            );
            assert!(controller.is_running(), "the controller kept running");
            controller.assert_no_panic();
        })
        .await;
    })
    .await;
}
