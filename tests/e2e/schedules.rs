//! Schedules end to end: created through the admin API of the real `holdfast` binary, fired
//! into a real Node endpoint, across a kill -9 of the kernel.

use holdfast_e2e::{
    Kernel, NodeFiles, Response, ServiceProcess, free_port, http, http_json, poll, register,
};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

const FIXTURE: &str = "tests/e2e/fixtures/durability-services.mjs";

fn now_ms() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}
/// Upper bound of every wait; far above what a loaded 2-core machine needs.
const PATIENCE: Duration = Duration::from_secs(45);

fn admin(files: &NodeFiles, method: &str, path: &str, body: &Value) -> Response {
    http_json(files.admin, method, path, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// `Counter/{key}`'s count, read through the ingress.
fn count(ingress: SocketAddr, key: &str) -> i64 {
    let response = http(ingress, "POST", &format!("/Counter/{key}/get"), &[], "")
        .unwrap_or_else(|e| panic!("get {key}: {e}"));
    assert_eq!(response.status, 200, "get {key}: {}", response.body);
    response.json().as_i64().unwrap_or_default()
}

fn sql_rows(files: &NodeFiles, query: &str) -> Vec<Value> {
    let response = admin(files, "POST", "/query", &json!({ "query": query }));
    assert_eq!(response.status, 200, "{query}: {}", response.body);
    response.json()["rows"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The ticks of schedule `name` that started an invocation, by their idempotency keys, and
/// whether every one of those invocations completed.
fn fired(files: &NodeFiles, name: &str) -> (Vec<u64>, bool) {
    let rows = sql_rows(
        files,
        "SELECT idempotency_key, status FROM sys_invocation WHERE invoked_by = 'schedule'",
    );
    let prefix = format!("schedule/{name}/");
    let mut ticks = Vec::new();
    let mut completed = true;
    for row in rows {
        let key = row["idempotency_key"].as_str().unwrap_or_default();
        if let Some(tick) = key.strip_prefix(&prefix) {
            ticks.push(tick.parse().unwrap_or_else(|_| panic!("tick of {key}")));
            completed &= row["status"] == "completed";
        }
    }
    ticks.sort_unstable();
    (ticks, completed)
}

#[test]
fn a_schedule_every_second_fires_each_tick_once_through_a_kill_9() {
    let files = NodeFiles::new(4, "");
    let mut kernel = Kernel::start(&files, "warn");
    let endpoint = ServiceProcess::start(FIXTURE, free_port(), &[]);
    register(files.admin, &endpoint.uri);
    let created = admin(
        &files,
        "POST",
        "/schedules",
        &json!({
            "name": "tick",
            "service": "Counter",
            "handler": "add",
            "key": "sched",
            "input": 1,
            "every": "1s",
            "catch_up": "all",
            "catch_up_max": 100,
            // Missed ticks fire together after downtime; queued, they run one after another.
            "overlap": "queue",
        }),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let view = created.json();
    assert_eq!(view["every"], "1s");
    assert_eq!(view["catch_up"], "all");
    assert!(view["next_fire_at"].is_string(), "{view}");
    // The same every second with `catch_up: skip` (the default), on another key.
    let skipping = admin(
        &files,
        "POST",
        "/schedules",
        &json!({
            "name": "skipping",
            "service": "Counter",
            "handler": "add",
            "key": "skipping",
            "input": 1,
            "every": "1s",
        }),
    );
    assert_eq!(skipping.status, 201, "{}", skipping.body);

    poll("three ticks", PATIENCE, || {
        (count(files.ingress, "sched") >= 3).then_some(())
    });
    kernel.kill9();
    let killed_ms = now_ms();
    // Ten seconds down: their ticks are missed; `catch_up: all` fires them after, `skip` does
    // not.
    std::thread::sleep(Duration::from_secs(10));
    kernel.restart();
    let restarted_ms = now_ms();
    poll("ticks two seconds after the restart", PATIENCE, || {
        let (ticks, _) = fired(&files, "tick");
        ticks
            .last()
            .is_some_and(|last| *last > restarted_ms + 2000)
            .then_some(())
    });
    for name in ["tick", "skipping"] {
        let removed = admin(
            &files,
            "DELETE",
            &format!("/schedules/{name}"),
            &json!(null),
        );
        assert_eq!(removed.status, 204, "{}", removed.body);
    }

    let (ticks, total) = poll("every fired tick completed", PATIENCE, || {
        let (ticks, completed) = fired(&files, "tick");
        let total = count(files.ingress, "sched");
        (idle(&files, "tick") && completed && total == ticks.len() as i64).then_some((ticks, total))
    });
    // Each tick started one invocation, applied once: the count is the number of ticks.
    let distinct: BTreeSet<u64> = ticks.iter().copied().collect();
    assert_eq!(distinct.len(), ticks.len(), "a tick fired twice: {ticks:?}");
    assert_eq!(total, ticks.len() as i64);
    // No tick is missing, those of the downtime included: every second from the first.
    let first = ticks[0];
    let expected: Vec<u64> = (0..ticks.len() as u64).map(|n| first + n * 1000).collect();
    assert_eq!(ticks, expected, "ticks are not every second without a gap");
    assert!(
        *ticks.last().unwrap_or(&0) > restarted_ms + 2000,
        "{ticks:?}"
    );
    // Well inside the downtime: the ticks a restarted leader finds missed (the newest one it
    // finds due is on time, and fires whatever the policy).
    let down = killed_ms + 1000..restarted_ms - 1500;
    let within = |ticks: &[u64]| ticks.iter().filter(|t| down.contains(t)).count();
    assert!(
        within(&ticks) >= 7,
        "catch_up all fired the downtime's ticks {down:?}: {ticks:?}"
    );
    let skipped = poll("the skipping schedule's runs completed", PATIENCE, || {
        let (ticks, completed) = fired(&files, "skipping");
        (idle(&files, "skipping") && completed).then_some(ticks)
    });
    assert_eq!(
        within(&skipped),
        0,
        "catch_up skip fired in {down:?}: {skipped:?}"
    );
    assert!(skipped.iter().any(|t| *t > restarted_ms), "{skipped:?}");
    assert!(skipped.iter().any(|t| *t < killed_ms), "{skipped:?}");
    // Removed: no tick fires any more.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(fired(&files, "tick").0.len(), ticks.len());
}

#[test]
fn schedules_are_created_read_paused_and_refused_with_json_errors() {
    let files = NodeFiles::new(2, "");
    let _kernel = Kernel::start(&files, "warn");
    let endpoint = ServiceProcess::start(FIXTURE, free_port(), &[]);
    register(files.admin, &endpoint.uri);
    let daily = json!({
        "name": "daily",
        "service": "Counter",
        "handler": "add",
        "key": "d",
        "cron": "30 9 * * MON-FRI",
        "timezone": "Europe/Berlin",
    });
    let created = admin(&files, "POST", "/schedules", &daily);
    assert_eq!(created.status, 201, "{}", created.body);
    let view = created.json();
    assert_eq!(view["cron"], "30 9 * * MON-FRI");
    assert_eq!(view["timezone"], "Europe/Berlin");
    assert_eq!(view["catch_up"], "skip");
    assert_eq!(view["paused"], false);
    let next = view["next_fire_at"].as_str().unwrap_or_default().to_owned();
    // 09:30 in Berlin is 07:30 or 08:30 UTC.
    assert!(
        next.ends_with("T07:30:00.000Z") || next.ends_with("T08:30:00.000Z"),
        "{next}"
    );

    let cases = [
        (
            json!({ "name": "daily", "service": "Counter", "handler": "add", "key": "d", "every": "1m" }),
            409,
            "schedule_exists",
        ),
        (
            json!({ "name": "bad", "service": "Counter", "handler": "add", "key": "d", "cron": "61 * * * *" }),
            400,
            "invalid_schedule",
        ),
        (
            json!({ "name": "bad", "service": "Counter", "handler": "add", "key": "d", "cron": "@daily", "timezone": "Mars/Base" }),
            400,
            "invalid_schedule",
        ),
        (
            json!({ "name": "bad", "service": "Counter", "handler": "add", "every": "1m" }),
            400,
            "invalid_schedule",
        ),
        (
            json!({ "name": "bad", "service": "Nope", "handler": "add", "every": "1m" }),
            400,
            "invalid_schedule",
        ),
        (
            json!({ "name": "bad", "service": "Counter", "handler": "add", "key": "d" }),
            400,
            "invalid_schedule",
        ),
        (
            json!({ "name": "bad", "service": "Counter", "handler": "add", "key": "d", "every": "1m", "cron": "@daily" }),
            400,
            "invalid_schedule",
        ),
        (
            json!({ "name": "bad", "service": "Counter", "handler": "add", "key": "d", "every": "1m", "catch_up": "sometimes" }),
            400,
            "invalid_schedule",
        ),
        (
            json!({ "name": "bad", "service": "Counter", "handler": "add", "key": "d", "every": "1m", "colour": "red" }),
            400,
            "invalid_body",
        ),
    ];
    for (body, status, code) in cases {
        let refused = admin(&files, "POST", "/schedules", &body);
        assert_eq!(refused.status, status, "{body}: {}", refused.body);
        let error = refused.json();
        assert_eq!(error["code"], code, "{body}: {error}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let missing = admin(&files, "GET", "/schedules/nope", &json!(null));
    assert_eq!(
        (missing.status, missing.json()["code"].clone()),
        (404, json!("unknown_schedule"))
    );
    let missing = admin(
        &files,
        "PATCH",
        "/schedules/nope",
        &json!({ "paused": true }),
    );
    assert_eq!(missing.status, 404, "{}", missing.body);

    let listed = admin(&files, "GET", "/schedules", &json!(null)).json();
    let names: Vec<&str> = listed["schedules"]
        .as_array()
        .map(|all| all.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["daily"]);

    // Every 500 ms, paused and resumed: nothing fires while paused.
    let fast = admin(
        &files,
        "POST",
        "/schedules",
        &json!({ "name": "fast", "service": "Counter", "handler": "add", "key": "f", "every": "500ms" }),
    );
    assert_eq!(fast.status, 201, "{}", fast.body);
    poll("the fast schedule fires", PATIENCE, || {
        (count(files.ingress, "f") >= 2).then_some(())
    });
    let paused = admin(
        &files,
        "PATCH",
        "/schedules/fast",
        &json!({ "paused": true }),
    );
    assert_eq!(paused.status, 200, "{}", paused.body);
    assert_eq!(paused.json()["paused"], true);
    assert!(paused.json().get("next_fire_at").is_none());
    // What was proposed before the pause lands; then the count stands still.
    std::thread::sleep(Duration::from_millis(1500));
    let still = count(files.ingress, "f");
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(count(files.ingress, "f"), still, "a paused schedule fired");
    let resumed = admin(
        &files,
        "PATCH",
        "/schedules/fast",
        &json!({ "paused": false, "every": "250ms" }),
    );
    assert_eq!(resumed.status, 200, "{}", resumed.body);
    assert_eq!(resumed.json()["every"], "250ms");
    poll("the resumed schedule fires", PATIENCE, || {
        (count(files.ingress, "f") >= still + 2).then_some(())
    });
    let renamed = admin(
        &files,
        "PATCH",
        "/schedules/fast",
        &json!({ "name": "slow" }),
    );
    assert_eq!(renamed.status, 400, "{}", renamed.body);

    // SQL: the definitions with their next tick, and what the firing partition recorded.
    let rows = sql_rows(
        &files,
        "SELECT name, cron, timezone, every_ms, catch_up, overlap, paused, next_fire_at \
         FROM sys_schedule ORDER BY name",
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["name"], "daily");
    assert_eq!(rows[0]["cron"], "30 9 * * MON-FRI");
    assert_eq!(rows[0]["timezone"], "Europe/Berlin");
    assert_eq!(rows[0]["catch_up"], "skip");
    assert_eq!(rows[0]["overlap"], "skip");
    assert!(rows[0]["next_fire_at"].is_string(), "{:?}", rows[0]);
    assert_eq!(rows[1]["name"], "fast");
    assert_eq!(rows[1]["every_ms"], 250);
    let runs = sql_rows(
        &files,
        "SELECT s.name, r.fired, r.skipped, r.last_tick_at, r.last_invocation_id \
         FROM sys_schedule s JOIN sys_schedule_run r ON s.name = r.name",
    );
    assert_eq!(runs.len(), 1, "daily never fired, fast did: {runs:?}");
    assert_eq!(runs[0]["name"], "fast");
    let fired = runs[0]["fired"].as_u64().unwrap_or_default();
    assert!(fired >= 4, "{runs:?}");
    assert!(runs[0]["last_tick_at"].is_string(), "{runs:?}");
    assert!(runs[0]["last_invocation_id"].is_string(), "{runs:?}");

    // Metrics: the node leads every partition, so it counted every fired tick.
    let metrics = holdfast_e2e::http_get(files.admin, "/metrics").expect("metrics");
    let series = "holdfast_schedule_ticks_total{schedule=\"fast\",outcome=\"fired\"} ";
    let counted: u64 = metrics
        .body
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{}", metrics.body));
    assert!(counted >= fired, "metrics {counted}, SQL {fired}");
}

/// Whether nothing runs or waits in schedule `name`'s record.
fn idle(files: &NodeFiles, name: &str) -> bool {
    let record = sql_rows(
        files,
        &format!("SELECT running, queued FROM sys_schedule_run WHERE name = '{name}'"),
    );
    record
        .first()
        .is_some_and(|row| row["running"] == 0 && row["queued"] == 0)
}

/// The invocations of schedule `name` by id, from their idempotency keys.
fn invocation_ids(files: &NodeFiles, name: &str) -> (Vec<String>, bool) {
    let rows = sql_rows(
        files,
        "SELECT id, idempotency_key, status FROM sys_invocation WHERE invoked_by = 'schedule'",
    );
    let prefix = format!("schedule/{name}/");
    let mut ids = Vec::new();
    let mut completed = true;
    for row in rows {
        if row["idempotency_key"]
            .as_str()
            .is_some_and(|key| key.starts_with(&prefix))
        {
            ids.push(row["id"].as_str().unwrap_or_default().to_owned());
            completed &= row["status"] == "completed";
        }
    }
    (ids, completed)
}

/// Whether two of `ids` ran at once: their `exec step` lines in the endpoint's output overlap.
fn overlapped(lines: &[String], ids: &[String]) -> bool {
    let spans: Vec<(usize, usize)> = ids
        .iter()
        .filter_map(|id| {
            let at: Vec<usize> = lines
                .iter()
                .enumerate()
                .filter(|(_, line)| line.starts_with("exec step") && line.ends_with(id.as_str()))
                .map(|(n, _)| n)
                .collect();
            Some((*at.first()?, *at.last()?))
        })
        .collect();
    spans
        .iter()
        .enumerate()
        .any(|(i, a)| spans.iter().skip(i + 1).any(|b| a.0 < b.1 && b.0 < a.1))
}

#[test]
fn overlap_policies_skip_queue_or_allow_a_tick_while_a_run_goes_on() {
    let files = NodeFiles::new(4, "");
    let _kernel = Kernel::start(&files, "warn");
    let endpoint = ServiceProcess::start(FIXTURE, free_port(), &[]);
    register(files.admin, &endpoint.uri);
    // A run takes three steps of 300 ms; a tick comes every 500 ms.
    for overlap in ["skip", "queue", "allow"] {
        let created = admin(
            &files,
            "POST",
            "/schedules",
            &json!({
                "name": overlap,
                "service": "Steps",
                "handler": "run3",
                "input": { "delayMs": 300 },
                "every": "500ms",
                "overlap": overlap,
            }),
        );
        assert_eq!(created.status, 201, "{}", created.body);
        assert_eq!(created.json()["overlap"], overlap);
    }
    std::thread::sleep(Duration::from_secs(3));
    for overlap in ["skip", "queue", "allow"] {
        let removed = admin(
            &files,
            "DELETE",
            &format!("/schedules/{overlap}"),
            &json!(null),
        );
        assert_eq!(removed.status, 204, "{}", removed.body);
    }
    // Ticks a queue holds still run after the schedule is removed.
    let runs = |name: &str| {
        poll(&format!("{name}'s runs completed"), PATIENCE, || {
            // A queued tick's invocation exists only once the one before it ended.
            let (ids, completed) = invocation_ids(&files, name);
            (idle(&files, name) && completed).then_some(ids)
        })
    };
    let (skip, queue, allow) = (runs("skip"), runs("queue"), runs("allow"));
    let lines = endpoint.log.lines();
    assert!(!overlapped(&lines, &skip), "skip ran two ticks at once");
    assert!(!overlapped(&lines, &queue), "queue ran two ticks at once");
    assert!(
        overlapped(&lines, &allow),
        "allow never overlapped: {allow:?}"
    );
    // Skip dropped ticks that queue kept: about one run in two against every tick.
    assert!(allow.len() >= 5, "{allow:?}");
    assert!(
        queue.len() >= allow.len() - 1,
        "queue {} allow {}",
        queue.len(),
        allow.len()
    );
    assert!(
        skip.len() < queue.len(),
        "skip {} queue {}",
        skip.len(),
        queue.len()
    );
}

/// The schedule's record as node `via` reads it: (firing partition, ticks fired).
fn run_record(admin: SocketAddr, name: &str) -> Option<(u32, u64)> {
    let response = http_json(
        admin,
        "POST",
        "/query",
        &json!({ "query": format!("SELECT partition, fired FROM sys_schedule_run WHERE name = '{name}'") }),
    )
    .ok()?;
    let rows = response.json()["rows"].as_array().cloned()?;
    let row = rows.first()?;
    Some((
        u32::try_from(row["partition"].as_u64()?).ok()?,
        row["fired"].as_u64()?,
    ))
}

#[test]
fn a_schedule_fires_each_tick_once_when_its_leader_is_killed() {
    use holdfast_e2e::cluster::{Cluster, ClusterOptions};
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.wait_for_leaders(PATIENCE);
    let endpoint = ServiceProcess::start(
        "tests/e2e/fixtures/leadership-services.mjs",
        free_port(),
        &[],
    );
    register(cluster.node(1).admin(), &endpoint.uri);
    for node in cluster.nodes() {
        poll("the deployment on every node", PATIENCE, || {
            let services = holdfast_e2e::http_get(node.admin(), "/services").ok()?;
            services.body.contains("\"Box\"").then_some(())
        });
    }
    let created = http_json(
        cluster.node(1).admin(),
        "POST",
        "/schedules",
        &json!({
            "name": "clustered",
            "service": "Box",
            "handler": "add",
            "key": "ticks",
            "input": "tick",
            "every": "1s",
            "catch_up": "all",
            "overlap": "queue",
        }),
    )
    .expect("create");
    assert_eq!(created.status, 201, "{}", created.body);
    let (partition, _) = poll("three ticks fired", PATIENCE, || {
        run_record(cluster.node(1).admin(), "clustered").filter(|(_, fired)| *fired >= 3)
    });
    let victim = cluster.leaders()[&partition];
    cluster.node(victim).kill9();
    let killed_ms = now_ms();
    let alive = if victim == 1 { 2 } else { 1 };
    let admin_of = cluster.node(alive).admin();
    poll("ticks three seconds after the kill", PATIENCE, || {
        let response = http_json(
            admin_of,
            "POST",
            "/query",
            &json!({ "query": "SELECT idempotency_key FROM sys_invocation WHERE invoked_by = 'schedule'" }),
        )
        .ok()?;
        let rows = response.json()["rows"].as_array().cloned()?;
        rows.iter()
            .filter_map(|row| {
                row["idempotency_key"]
                    .as_str()?
                    .rsplit('/')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .any(|tick| tick > killed_ms + 3000)
            .then_some(())
    });
    let removed =
        http_json(admin_of, "DELETE", "/schedules/clustered", &json!(null)).expect("delete");
    assert_eq!(removed.status, 204, "{}", removed.body);
    let ingress = cluster.node(alive).ingress();
    let (ticks, messages) = poll("every tick's run completed", PATIENCE, || {
        let response = http_json(
            admin_of,
            "POST",
            "/query",
            &json!({ "query": "SELECT idempotency_key, status FROM sys_invocation WHERE invoked_by = 'schedule'" }),
        )
        .ok()?;
        let rows = response.json()["rows"].as_array().cloned()?;
        let mut ticks = Vec::new();
        for row in &rows {
            if row["status"] != "completed" {
                return None;
            }
            ticks.push(
                row["idempotency_key"]
                    .as_str()?
                    .rsplit('/')
                    .next()?
                    .parse::<u64>()
                    .ok()?,
            );
        }
        let list = http(ingress, "POST", "/Box/ticks/list", &[], "").ok()?;
        let messages = list.json().as_array()?.len();
        (messages == ticks.len()).then_some((ticks, messages))
    });
    let mut sorted = ticks.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), ticks.len(), "a tick fired twice: {ticks:?}");
    assert_eq!(messages, ticks.len(), "each tick's run took effect once");
    let first = sorted[0];
    let expected: Vec<u64> = (0..sorted.len() as u64).map(|n| first + n * 1000).collect();
    assert_eq!(
        sorted, expected,
        "a tick was lost across the leader's death"
    );
}

/// `Ticker/{key}`'s count, read through the ingress.
fn ticks(ingress: SocketAddr, key: &str) -> i64 {
    let response = http(ingress, "POST", &format!("/Ticker/{key}/count"), &[], "")
        .unwrap_or_else(|e| panic!("count {key}: {e}"));
    assert_eq!(response.status, 200, "count {key}: {}", response.body);
    response.json().as_i64().unwrap_or_default()
}

#[test]
fn a_schedule_declared_in_code_comes_with_the_registration_and_goes_with_it() {
    const DECLARING: &str = "tests/e2e/fixtures/declared-schedules.mjs";
    let files = NodeFiles::new(2, "");
    let _kernel = Kernel::start(&files, "warn");
    let port = free_port();
    let endpoint = ServiceProcess::start(DECLARING, port, &[]);
    register(files.admin, &endpoint.uri);
    let declared = admin(&files, "GET", "/schedules/Ticker.tick", &json!(null));
    assert_eq!(declared.status, 200, "{}", declared.body);
    let view = declared.json();
    assert_eq!(view["declared"], true, "{view}");
    assert_eq!(view["service"], "Ticker");
    assert_eq!(view["handler"], "tick");
    assert_eq!(view["key"], "code");
    assert_eq!(view["every"], "1s");
    assert_eq!(view["overlap"], "allow");
    let rows = sql_rows(&files, "SELECT name, declared FROM sys_schedule");
    assert_eq!(rows, [json!({ "name": "Ticker.tick", "declared": true })]);
    poll("three ticks of the declared schedule", PATIENCE, || {
        (ticks(files.ingress, "code") >= 3).then_some(())
    });

    // The next release no longer declares it: registering it removes the schedule.
    drop(endpoint);
    let endpoint = ServiceProcess::start(DECLARING, port, &[("DECLARE", "0")]);
    register(files.admin, &endpoint.uri);
    let gone = admin(&files, "GET", "/schedules/Ticker.tick", &json!(null));
    assert_eq!(gone.status, 404, "{}", gone.body);
    // A tick proposed just before may still land; after that, nothing more.
    std::thread::sleep(Duration::from_millis(1500));
    let settled = ticks(files.ingress, "code");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        ticks(files.ingress, "code"),
        settled,
        "no tick after the removal"
    );
}
