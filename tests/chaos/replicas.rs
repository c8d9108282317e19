//! The operator itself killed: a single replica at seeded random points,
//! and the leader of two.

use k8s_openapi::jiff::Timestamp;

use super::*;

/// The operator killed with SIGKILL at seeded random points of a converge,
/// a new one started each time: the last one converges everything, and the
/// invariants hold. The seed and the kill points are printed for a replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_killed_at_random_points_converges() {
    let _serial = SERIAL.lock().await;
    let plane = support::plane();
    let admin = plane.admin().await;
    for seed in seeds(3) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut fleet = Fleet::create(&admin, &format!("kill{seed}"), 60 * soak()).await;
        let churn = Churn::start(&admin, &fleet, seed, true);
        let mut points = Vec::new();
        for _ in 0..3 {
            let op = Operator::start_with_env(&["--leader-election=false"], &[]);
            let point = Duration::from_millis(rng.u64(200..4000));
            points.push(point);
            tokio::time::sleep(point).await;
            op.kill9();
            until("the killed operator to be gone", TIMEOUT, || {
                !op.is_running()
            })
            .await;
        }
        eprintln!(
            "chaos: seed {seed}: operator killed after {points:?} (replay: WORKSPACE_OPERATOR_CHAOS_SEED={seed})"
        );
        let op = Operator::alone(&[], &[]);
        let deleted = churn.stop().await;
        forget(&mut fleet, &deleted);
        let settled = fleet.settle(&admin, SETTLE).await;
        wait_deleted(&admin, &deleted, SETTLE).await;
        assert!(op.is_running(), "the operator died: {}", op.log_tail(30));
        eprintln!(
            "chaos: seed {seed}: converged {settled:?} after the last start ({} workspaces)",
            fleet.workspaces.len()
        );
    }
}

/// The replica of `ops` that leads, once every one of them is past its
/// start-up checks (it serves its metrics) and exactly one leads.
async fn leader_of<'a>(ops: &[&'a Operator]) -> &'a Operator {
    support::wait_for("exactly one replica to lead", TIMEOUT, || async {
        let leading: Vec<Option<f64>> = ops
            .iter()
            .map(|op| op.metric("workspace_operator_leader", ""))
            .collect();
        if leading.iter().any(Option::is_none) {
            return None;
        }
        let mut leaders = ops.iter().zip(&leading).filter(|(_, l)| **l == Some(1.0));
        match (leaders.next(), leaders.next()) {
            (Some((op, _)), None) => Some(*op),
            _ => None,
        }
    })
    .await
}

/// Two replicas with leader election, started before the audit mark, and a
/// fleet converging with members churning.
struct Pair {
    replicas: [Operator; 2],
    mark: support::AuditMark,
    fleet: Fleet,
    churn: Churn,
}

impl Pair {
    async fn mid_converge(admin: &kube::Client, prefix: &str, size: usize, seed: u64) -> Pair {
        let replicas = [Operator::start(&[]), Operator::start(&[])];
        leader_of(&[&replicas[0], &replicas[1]]).await;
        let mark = support::plane().audit_mark();
        let fleet = Fleet::create(admin, prefix, size).await;
        let churn = Churn::start(admin, &fleet, seed, false);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        Pair {
            replicas,
            mark,
            fleet,
            churn,
        }
    }
}

/// The leader and the standby of `replicas`, as they are now (on a loaded
/// machine a renewal can fail and the Lease change hands after the start).
async fn roles(replicas: &[Operator; 2]) -> (&Operator, &Operator) {
    let [a, b] = replicas;
    let leader = leader_of(&[a, b]).await;
    (leader, if std::ptr::eq(leader, a) { b } else { a })
}

/// Each replica's term as the audit log shows it: its User-Agent, its
/// first and its last write (received by the API server), in order of the
/// first. Panics when two terms overlap: a replica wrote after another
/// replica's first write.
fn terms(writes: &[support::AuditedRequest]) -> Vec<(String, Timestamp, Timestamp, usize)> {
    let mut terms: Vec<(String, Timestamp, Timestamp, usize)> = Vec::new();
    for w in writes {
        let at: Timestamp = w.at.parse().expect("a timestamp");
        match terms.iter_mut().find(|t| t.0 == w.agent) {
            Some(t) => {
                t.1 = t.1.min(at);
                t.2 = t.2.max(at);
                t.3 += 1;
            }
            None => terms.push((w.agent.clone(), at, at, 1)),
        }
    }
    terms.sort_by_key(|t| t.1);
    for pair in terms.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        let late: Vec<String> = writes
            .iter()
            .filter(|w| w.agent == before.0 && w.at.parse::<Timestamp>().ok() >= Some(after.1))
            .map(|w| w.to_string())
            .collect();
        assert!(
            late.is_empty(),
            "{} wrote after {} had begun writing at {}: {late:?}",
            before.0,
            after.0,
            after.1
        );
    }
    terms
}

/// Two replicas with leader election: the leader is killed with SIGKILL
/// mid-converge; the standby takes over within the lease duration (15 s)
/// and finishes, and the audit log shows no write from a replica after the
/// next leader's first. Then the new leader stops gracefully and a third
/// replica takes over at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_from_a_killed_leader() {
    let _serial = SERIAL.lock().await;
    let plane = support::plane();
    let admin = plane.admin().await;
    let pair = Pair::mid_converge(&admin, "leader", 100 * soak(), 11).await;
    let (mark, mut fleet, churn) = (pair.mark, pair.fleet, pair.churn);
    let (leader, standby) = roles(&pair.replicas).await;
    leader.kill9();
    let killed = Instant::now();
    let second = leader_of(&[standby]).await;
    let takeover = killed.elapsed();
    assert!(
        takeover < Duration::from_secs(15 + 2 + 8),
        "the standby took {takeover:?} to take over (lease 15 s, poll 2 s)"
    );
    let deleted = churn.stop().await;
    forget(&mut fleet, &deleted);
    let settled = fleet.settle(&admin, SETTLE).await;
    let terms = terms(&plane.writes_since(mark, OPERATOR_USER));
    assert!(terms.len() >= 2, "one replica wrote everything: {terms:?}");
    let summary: Vec<String> = terms
        .iter()
        .map(|(agent, first, last, n)| format!("{agent}: {n} writes {first}..{last}"))
        .collect();

    // A graceful stop hands over at once: the Lease is released.
    let third = Operator::start(&[]);
    third.wait_ready(TIMEOUT);
    second.stop();
    let stopped = Instant::now();
    leader_of(&[&third]).await;
    let handover = stopped.elapsed();
    assert!(
        handover < Duration::from_secs(5),
        "graceful handover took {handover:?}"
    );
    eprintln!(
        "chaos: leader killed mid-converge: standby led {takeover:?} later, fleet of {} converged \
         {settled:?} after that; terms in the audit log, none overlapping: {summary:?}; \
         graceful stop handed over in {handover:?}",
        fleet.workspaces.len(),
    );
}

/// A leader frozen (SIGSTOP, as a long pause or a stalled node would) for
/// longer than the lease: the standby takes over and converges; thawed, the
/// old leader must notice it lost the Lease before it writes anything, so
/// the audit log shows no write of its after the new leader's first.
///
/// It does not hold today: the thawed replica's reconciles in progress send
/// their writes before its renewal loop finds the Lease taken (a Lease is
/// not a fencing token; docs/reliability.md, known limits). Run it with
/// `--ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a paused leader's in-flight writes land after the takeover (docs/reliability.md)"]
async fn a_frozen_leader_writes_nothing_after_the_standby_took_over() {
    let _serial = SERIAL.lock().await;
    let plane = support::plane();
    let admin = plane.admin().await;
    let pair = Pair::mid_converge(&admin, "frozen", 60 * soak(), 13).await;
    let (mark, mut fleet, churn) = (pair.mark, pair.fleet, pair.churn);
    let (leader, standby) = roles(&pair.replicas).await;
    leader.freeze();
    let frozen = Instant::now();
    leader_of(&[standby]).await;
    let takeover = frozen.elapsed();
    // The new leader works for a while, then the old one wakes up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    leader.thaw();
    // It steps down (and exits, to be restarted as a candidate).
    until(
        "the thawed replica to know it does not lead",
        TIMEOUT,
        || leader.metric("workspace_operator_leader", "") != Some(1.0),
    )
    .await;
    let deleted = churn.stop().await;
    forget(&mut fleet, &deleted);
    let settled = fleet.settle(&admin, SETTLE).await;
    let terms = terms(&plane.writes_since(mark, OPERATOR_USER));
    let summary: Vec<String> = terms
        .iter()
        .map(|(agent, first, last, n)| format!("{agent}: {n} writes {first}..{last}"))
        .collect();
    eprintln!(
        "chaos: leader frozen: standby led {takeover:?} later; thawed, the old leader stepped down; \
         fleet converged {settled:?} later; terms, none overlapping: {summary:?}"
    );
}
