//! Two panel replicas on one PostgreSQL, one of them `kill -9`ed mid-run: schedules still
//! fire, each due run exactly once while a replica is there to claim it, and never twice.
//! Both replicas run the schedule runner; the claim is the store's compare-and-set.
//!
//! The test makes a schedule due by moving its `next_run_at` into the past in the database
//! (a cron schedule is due at most once a minute; this stands in for waiting).

#![allow(clippy::unwrap_used, clippy::expect_used)]
// One cluster at a time: each test holds a std mutex for its whole (single-runtime) body.
#![allow(clippy::await_holding_lock)]

use nexus_system_tests::docker::docker;
use nexus_system_tests::{
    Api, Cluster, ClusterConfig, Console, T, busybox_egg, docker_ready, one_cluster_at_a_time, running_server_on,
};
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};

/// The schedule runners look every 5 s; a second runner that would run a due schedule again
/// has had its chance after this.
const BOTH_LOOKED: Duration = Duration::from_secs(7);

async fn runs(api: &Api, server: &str) -> usize {
    let activity = api.get(&format!("/api/v1/servers/{server}/activity?per_page=100")).await;
    activity["data"].as_array().unwrap().iter().filter(|e| e["action"] == "schedule.run").count()
}

fn make_due(cluster: &Cluster, schedule: &str) {
    let sql = format!(
        "UPDATE schedules SET next_run_at = (now() AT TIME ZONE 'utc') - interval '1 second' WHERE id = '{schedule}'"
    );
    docker(&[
        "exec",
        &cluster.database,
        "psql",
        "-q",
        "-h",
        "127.0.0.1",
        "-p",
        "5432",
        "-U",
        "nexus",
        "-d",
        "postgres",
        "-c",
        &sql,
    ]);
}

/// Reads the console until `n` lines of the scheduled command arrived (or `wait` passed),
/// then 2 s more, so a duplicate arriving late is counted too; how many arrived.
async fn echoes(console: &mut Console, n: usize, wait: Duration) -> usize {
    let count = |c: &Console| c.lines.iter().filter(|l| l.contains("echo: scheduled")).count();
    let deadline = Instant::now() + wait;
    while count(console) < n {
        let Ok(Some(_)) = tokio::time::timeout_at(deadline.into(), console.next_event()).await else { break };
    }
    let settled = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Some(_)) = tokio::time::timeout_at(settled, console.next_event()).await {}
    count(console)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_run_each_due_schedule_once_and_the_survivor_goes_on_after_a_kill() {
    if !docker_ready() {
        return;
    }
    let _one = one_cluster_at_a_time();
    let cluster = Cluster::start(ClusterConfig { panels: 2, nodes: 1, first_port: 31600, ..Default::default() }).await;
    let survivor = cluster.api.at(&cluster.panels[1].url);
    let api = &cluster.api;
    let egg = cluster.import_egg(busybox_egg()).await;
    let me = cluster.admin_id().await;
    let server = running_server_on(api, &egg, &me, "scheduled", &cluster.nodes[0].id).await;
    let mut console = Console::open(api, &server).await;
    let schedule = api
        .expect(
            Method::POST,
            &format!("/api/v1/servers/{server}/schedules"),
            Some(json!({ "name": "say", "cron": "0 4 * * *", "tasks": [{ "action": { "kind": "command", "payload": "scheduled" } }] })),
            201,
        )
        .await;
    let schedule = schedule["id"].as_str().unwrap().to_owned();

    let mut expected = 0;
    let round = async |expected: usize, label: &str| {
        make_due(&cluster, &schedule);
        let started = Instant::now();
        let fired = loop {
            if runs(&survivor, &server).await >= expected {
                break started.elapsed();
            }
            assert!(started.elapsed() < T, "{label}: the due schedule never ran");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        tokio::time::sleep(BOTH_LOOKED).await;
        assert_eq!(runs(&survivor, &server).await, expected, "{label}: each due run exactly once");
        eprintln!("[replicas] {label}: ran once, {:.1} s after it was due", fired.as_secs_f64());
    };
    // Both replicas running.
    for label in ["both replicas, round 1", "both replicas, round 2"] {
        expected += 1;
        round(expected, label).await;
    }
    assert_eq!(echoes(&mut console, expected, T).await, expected, "each run's command reached the server once");

    // One replica killed the moment a run is due: that run happens at most once (lost only if
    // the killed replica had claimed it and died before sending).
    make_due(&cluster, &schedule);
    cluster.kill_panel(0);
    tokio::time::sleep(BOTH_LOOKED).await;
    let after_kill = runs(&survivor, &server).await;
    assert!(
        (expected..=expected + 1).contains(&after_kill),
        "the run due at the kill ran {} times",
        after_kill - expected
    );
    let echoed = echoes(&mut console, after_kill, T).await;
    assert!((expected..=expected + 1).contains(&echoed), "{echoed} commands for {after_kill} runs");
    eprintln!("[replicas] the run due at the kill ran {} time(s)", after_kill - expected);
    // Commands sent beyond recorded runs (or short of them): only the killed replica's run can differ.
    let drift = echoed as i64 - after_kill as i64;
    expected = after_kill;

    // The survivor alone, then both again.
    for label in ["survivor alone, round 1", "survivor alone, round 2"] {
        expected += 1;
        round(expected, label).await;
    }
    cluster.start_panel(0).await;
    expected += 1;
    round(expected, "replica restarted").await;
    let want = (expected as i64 + drift) as usize;
    assert_eq!(echoes(&mut console, want, T).await, want, "one command per run");
    console.close().await;
}
