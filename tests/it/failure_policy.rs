//! Failure policy with a controllable clock (no test waits out real minutes): poison
//! packages never ground anyone, a broken drone is grounded and comes back through exactly
//! one probe, and failures everywhere are a central fault rather than a grounded fleet.

use crate::common::*;
use build_swarm::domain::{DroneState, FailureKind, PackageState};
use build_swarm::sys::clock::ManualClock;
use build_swarm::wire::orchestrator::{FailRequest, PackageCounts};
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// A simulated drone with scripted failures.
struct ScriptedDrone {
    sim: SimDrone,
    slots: usize,
    poison: Rc<HashSet<String>>,
    /// This drone's uploads fail.
    broken_uploads: Cell<bool>,
    /// Everybody's uploads fail (the upload target is down).
    central_outage: Rc<Cell<bool>>,
    built: Cell<usize>,
}

impl std::ops::Deref for ScriptedDrone {
    type Target = SimDrone;
    fn deref(&self) -> &SimDrone {
        &self.sim
    }
}

impl ScriptedDrone {
    /// Claims up to its slots and finishes each claim. Returns how many it claimed.
    async fn round(&self) -> usize {
        let mut n = 0;
        for _ in 0..self.slots {
            let Some(w) = self.claim().await.expect("claim") else {
                break;
            };
            n += 1;
            if self.poison.contains(&w.atom) {
                let why = "emake failed";
                self.fail(&w, FailureKind::Build, why, &format!("{why}\n"))
                    .await
                    .expect("fail");
                continue;
            }
            if self.broken_uploads.get() || self.central_outage.get() {
                let why = "rsync exit 12: connection lost";
                self.client
                    .uploading(w.lease, w.epoch)
                    .await
                    .expect("uploading");
                self.fail(&w, FailureKind::Infra, why, &format!("{why}\n"))
                    .await
                    .expect("fail");
                continue;
            }
            let r = self.upload_and_complete(&w).await.expect("complete");
            assert!(r.accepted, "{}", w.atom);
            self.built.set(self.built.get() + 1);
        }
        n
    }
}

struct Swarm {
    app: TestApp,
    clock: Arc<ManualClock>,
    drones: Vec<ScriptedDrone>,
    outage: Rc<Cell<bool>>,
}

async fn swarm(n: usize, slots: usize, poison: HashSet<String>) -> Swarm {
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config(dir.path());
    let clock = ManualClock::new();
    let app = spawn_app_with_clock(dir, cfg, clock.clone()).await;
    let poison = Rc::new(poison);
    let outage = Rc::new(Cell::new(false));
    let mut drones = Vec::new();
    for i in 0..n {
        let name = format!("drone-{i}");
        app.register(&name, slots as u32).await;
        drones.push(ScriptedDrone {
            sim: app.sim_drone(&name),
            slots,
            poison: poison.clone(),
            broken_uploads: Cell::new(false),
            central_outage: outage.clone(),
            built: Cell::new(0),
        });
    }
    Swarm {
        app,
        clock,
        drones,
        outage,
    }
}

impl Swarm {
    async fn counts(&self) -> PackageCounts {
        self.app.anon().status().await.unwrap().counts
    }
    async fn drone_states(&self) -> HashMap<String, (DroneState, u32)> {
        self.app
            .anon()
            .drones()
            .await
            .unwrap()
            .drones
            .into_iter()
            .map(|d| (d.name, (d.state, d.failures)))
            .collect()
    }
    async fn grounded(&self) -> usize {
        self.drone_states()
            .await
            .values()
            .filter(|(s, _)| *s == DroneState::Grounded)
            .count()
    }
}

/// The seed's day: 261 packages with dependencies, 41 of which always fail to build, on
/// 4 drones. The 41 fail, their dependents are blocked, everything else is built, and no
/// drone is ever grounded.
#[actix_web::test]
async fn the_seed_scenario_grounds_nobody() {
    let n = 261;
    let deps_of = |i: usize| -> Vec<usize> {
        let mut d: Vec<usize> = [i / 3, i / 7]
            .into_iter()
            .filter(|j| *j < i && i > 0)
            .collect();
        d.dedup();
        d
    };
    let atom = |i: usize| format!("kde-apps/pkg{i}-23.08.{i}");
    // 41 broken packages, some with dependents, none depending on another broken one
    // (that one would be blocked, not failed).
    let mut poison_ids: HashSet<usize> = HashSet::new();
    let mut tainted: HashSet<usize> = HashSet::new(); // poison or depends on poison
    for i in 0..n {
        let dep_tainted = deps_of(i).iter().any(|d| tainted.contains(d));
        let wanted = (10 < i && i < 87 && i % 9 == 4) || (i >= 87 && i % 3 == 1);
        if !dep_tainted && wanted && poison_ids.len() < 41 {
            poison_ids.insert(i);
        }
        if dep_tainted || poison_ids.contains(&i) {
            tainted.insert(i);
        }
    }
    let poison: HashSet<String> = poison_ids.iter().map(|i| atom(*i)).collect();
    assert_eq!(poison.len(), 41);
    let s = swarm(4, 2, poison.clone()).await;
    let pkgs: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            // The broken ones are the big KDE packages: long estimates put them at the
            // front of the queue together, as a batch, like in the seed's run.
            let estimate = if poison.contains(&atom(i)) { 600 } else { 60 };
            let deps: Vec<String> = deps_of(i).into_iter().map(atom).collect();
            serde_json::json!({"atom": atom(i), "deps": deps, "estimate_s": estimate})
        })
        .collect();
    s.app
        .admin()
        .submit(
            serde_json::json!({ "packages": pkgs })
                .to_string()
                .into_bytes(),
        )
        .await
        .unwrap();
    // Expected: dependents (transitively) of a poison package are blocked.
    let mut blocked: HashSet<usize> = HashSet::new();
    for i in 0..n {
        if deps_of(i)
            .iter()
            .any(|d| poison.contains(&atom(*d)) || blocked.contains(d))
        {
            blocked.insert(i);
        }
    }
    let mut rounds = 0;
    // A wall-clock bound, not a round count: empty rounds while an index write is due
    // come quickly, and how many depends on the disk.
    let t0 = std::time::Instant::now();
    loop {
        let mut claimed = 0;
        for d in &s.drones {
            claimed += d.round().await;
        }
        assert_eq!(
            s.grounded().await,
            0,
            "a drone was grounded in round {rounds}"
        );
        let c = s.counts().await;
        if c.is_done() {
            break;
        }
        rounds += 1;
        assert!(t0.elapsed() < Duration::from_secs(120), "no end: {c:?}");
        if claimed == 0 {
            s.clock.advance(Duration::from_secs(5));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let c = s.counts().await;
    let listing = s.app.anon().packages(None).await.unwrap().packages;
    let odd: Vec<_> = listing
        .iter()
        .filter(|p| poison.contains(&p.atom) && p.state != PackageState::Failed)
        .collect();
    assert_eq!(c.failed, 41, "{c:?} {odd:?}");
    assert_eq!(c.blocked, blocked.len(), "{c:?}");
    assert_eq!(c.built, n - 41 - blocked.len(), "{c:?}");
    let failed = s
        .app
        .anon()
        .packages(Some("failed"))
        .await
        .unwrap()
        .packages;
    assert!(failed
        .iter()
        .all(|p| p.reason.as_deref().unwrap_or("").contains("emake failed")));
    let states = s.drone_states().await;
    assert!(
        states
            .values()
            .all(|(st, f)| *st != DroneState::Grounded && *f == 0),
        "{states:?}"
    );
    // Not even for a moment between two looks, and no fault declared either.
    let log = s.app.logs.text();
    assert!(!log.contains("drone grounded"), "a drone was grounded");
    assert!(
        !log.contains("central fault"),
        "a central fault was declared"
    );
    s.app.stop().await;
}

/// One drone whose uploads always fail is grounded, its work moves to the others, and
/// after the cool-off it comes back through exactly one probe lease.
#[actix_web::test]
async fn a_broken_drone_is_grounded_and_comes_back_through_one_probe() {
    let s = swarm(4, 4, HashSet::new()).await;
    s.app
        .admin()
        .submit(chain_set(300).into_bytes())
        .await
        .unwrap();
    let bad = &s.drones[0];
    bad.broken_uploads.set(true);
    // The bad drone fails five uploads in a row...
    while s.drone_states().await[&bad.name].0 != DroneState::Grounded {
        assert!(bad.round().await > 0, "the bad drone should still get work");
    }
    let info = s.app.anon().drone(&bad.name).await.unwrap();
    assert!(info.grounded_until.is_some());
    assert!(
        info.grounded_reason
            .as_deref()
            .unwrap_or("")
            .contains("5 consecutive failures"),
        "{info:?}"
    );
    // ...and gets nothing while grounded; the others take its work.
    assert_eq!(bad.round().await, 0);
    for _ in 0..10 {
        for d in &s.drones[1..] {
            d.round().await;
        }
        s.clock.advance(Duration::from_secs(10)); // retry backoff of the failed packages
    }
    assert!(s.counts().await.built >= 60);
    assert!(s.drones[1..].iter().all(|d| d.built.get() > 0));
    // After the cool-off: one probe lease, not four.
    s.clock.advance(Duration::from_secs(121));
    bad.broken_uploads.set(false);
    let first = bad
        .client
        .claim(&bad.name)
        .await
        .unwrap()
        .expect("the probe lease");
    assert!(
        bad.client.claim(&bad.name).await.unwrap().is_none(),
        "half-open admits exactly one probe"
    );
    assert!(s.app.anon().drone(&bad.name).await.unwrap().probing);
    bad.client
        .uploading(first.lease, first.epoch)
        .await
        .unwrap();
    let req = fake_upload(&bad.staging, &first, &artifact_bytes(&first.atom));
    assert!(
        bad.client
            .complete(first.lease, &req)
            .await
            .unwrap()
            .accepted
    );
    // Closed again, clean count, and not starved: it gets its full share of work.
    let info = s.app.anon().drone(&bad.name).await.unwrap();
    assert_eq!((info.state, info.failures), (DroneState::Idle, 0));
    assert_eq!(
        bad.round().await,
        4,
        "a recovered drone gets work like the others"
    );
    s.app.stop().await;
}

/// Uploads fail on every drone (the staging host is down): a central fault, at most half
/// the fleet ever grounded, and everything completes once uploads work again.
#[actix_web::test]
async fn failures_everywhere_are_a_central_fault_not_a_grounded_fleet() {
    let s = swarm(4, 2, HashSet::new()).await;
    s.app
        .admin()
        .submit(chain_set(40).into_bytes())
        .await
        .unwrap();
    s.outage.set(true);
    let mut fault_seen = false;
    for _ in 0..30 {
        for d in &s.drones {
            d.round().await;
        }
        assert!(s.grounded().await <= 2, "more than half the fleet grounded");
        let st = s.app.anon().status().await.unwrap();
        if let Some(f) = st.central_fault {
            assert!(f.reason.contains("rsync exit 12"), "{f:?}");
            fault_seen = true;
        }
        s.clock.advance(Duration::from_secs(20));
    }
    assert!(fault_seen, "status never showed the central fault");
    assert_eq!(s.counts().await.built, 0);
    // The staging host is back.
    s.outage.set(false);
    let mut rounds = 0;
    while !s.counts().await.is_done() {
        for d in &s.drones {
            d.round().await;
        }
        s.clock.advance(Duration::from_secs(20));
        rounds += 1;
        assert!(rounds < 100, "did not recover: {:?}", s.counts().await);
    }
    let c = s.counts().await;
    assert_eq!(
        (c.built, c.failed),
        (40, 0),
        "no package paid for the outage: {c:?}"
    );
    assert!(s.app.anon().status().await.unwrap().central_fault.is_none());
    s.app.stop().await;
}

/// Retrying a failed package through the API unblocks its dependents.
#[actix_web::test]
async fn retry_unblocks_dependents() {
    let s = swarm(2, 1, ["app-misc/base-1".to_string()].into_iter().collect()).await;
    let set = r#"{"packages":[{"atom":"app-misc/base-1"},{"atom":"app-misc/top-1","deps":["app-misc/base-1"]}]}"#;
    s.app.admin().submit(set.as_bytes().to_vec()).await.unwrap();
    for _ in 0..4 {
        for d in &s.drones {
            d.round().await;
        }
    }
    let c = s.counts().await;
    assert_eq!((c.failed, c.blocked), (1, 1));
    let r = s
        .app
        .admin()
        .retry(&build_swarm::wire::orchestrator::RetryRequest {
            atoms: vec!["app-misc/base-1".into()],
            state: None,
        })
        .await
        .unwrap();
    assert_eq!((r.retried, r.unblocked), (1, 1));
    let pkgs = s.app.anon().packages(None).await.unwrap().packages;
    assert_eq!(pkgs[0].state, PackageState::Queued);
    assert_eq!(pkgs[1].state, PackageState::Waiting);
    s.app.stop().await;
}

/// Infrastructure failures delay the package (doubling backoff) and, past
/// `max_infra_retries`, fail it with the last reason.
#[actix_web::test]
async fn infrastructure_retries_back_off_and_end() {
    let s = swarm(4, 1, HashSet::new()).await;
    s.app
        .admin()
        .submit(b"app-misc/flaky-1.0\n".to_vec())
        .await
        .unwrap();
    let fail_upload = |w: &build_swarm::wire::orchestrator::WorkAssignment| FailRequest {
        epoch: w.epoch,
        kind: FailureKind::Infra,
        reason: format!("rsync exit 12 (attempt for lease {})", w.lease),
        log_tail: String::new(),
    };
    let mut waits = Vec::new();
    // Spread over the drones so no drone's breaker trips: this is about the package.
    for attempt in 0..6 {
        let d = &s.drones[attempt % 4];
        let w = d
            .client
            .claim(&d.name)
            .await
            .unwrap()
            .expect("the package is handed out");
        d.client.fail(w.lease, &fail_upload(&w)).await.unwrap();
        if attempt == 5 {
            break;
        }
        // Not handed out again until its backoff is over.
        let next = &s.drones[(attempt + 1) % 4];
        let mut waited = 0;
        while next.client.claim(&next.name).await.unwrap().is_none() {
            s.clock.advance(Duration::from_secs(5));
            waited += 5;
            assert!(waited <= 700, "backoff never ended");
        }
        // That claim took it: give it back as a cancellation (costs nothing).
        let listing = s.app.anon().packages(None).await.unwrap().packages;
        assert_eq!(listing[0].state, PackageState::Building);
        waits.push(waited);
        let w = s.app.anon().drone_queue(&next.name).await.unwrap().current[0].clone();
        next.client
            .fail(
                w.lease,
                &FailRequest {
                    epoch: w.epoch,
                    kind: FailureKind::Cancelled,
                    reason: "test".into(),
                    log_tail: String::new(),
                },
            )
            .await
            .unwrap();
    }
    assert!(
        waits.windows(2).all(|w| w[1] >= w[0]),
        "backoff grows: {waits:?}"
    );
    assert!(waits[0] >= 10 && waits[3] >= 80, "{waits:?}");
    let p = &s.app.anon().packages(None).await.unwrap().packages[0];
    assert_eq!(p.state, PackageState::Failed);
    let reason = p.reason.as_deref().unwrap_or("");
    assert!(
        reason.contains("gave up after 6 infrastructure failures")
            && reason.contains("rsync exit 12"),
        "{reason}"
    );
    s.app.stop().await;
}
