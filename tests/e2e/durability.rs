//! Durability end to end: the real `holdfast` binary and real Node endpoints built with the SDK,
//! crashed and paused for real (SIGKILL, SIGSTOP/SIGCONT) while invocations run through the
//! ingress. The fixture (`fixtures/durability-services.mjs`) prints what its handlers execute
//! and use; the tests hold the kernel's answers and stored state against those lines.

use holdfast_e2e::{
    Kernel, NodeFiles, Response, ServiceProcess, TcpProxy, free_port, free_ports, http, http_get,
    poll, register, signal,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const FIXTURE: &str = "tests/e2e/fixtures/durability-services.mjs";
const JSON: (&str, &str) = ("content-type", "application/json");
/// Upper bound of every wait; far above what a loaded 2-core machine needs.
const PATIENCE: Duration = Duration::from_secs(45);

fn call(ingress: SocketAddr, path: &str, body: &Value) -> Response {
    http(ingress, "POST", path, &[JSON], &body.to_string())
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// A call that must answer 200; returns the JSON answer.
fn ok(ingress: SocketAddr, path: &str, body: &Value) -> Value {
    let answer = ok_text(ingress, path, body);
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("POST {path}: {e}: {answer}"))
}

/// A call that must answer 200; returns the answer's text. Drawn numbers are compared as the
/// text JavaScript printed, which is exact, where a parsed `f64` may be off by one ulp.
fn ok_text(ingress: SocketAddr, path: &str, body: &Value) -> String {
    let response = call(ingress, path, body);
    assert_eq!(
        response.status, 200,
        "POST {path}: {} {}",
        response.status, response.body
    );
    response.body.trim().to_string()
}

/// The value in a fixture line `<verb> draw <key> <value> pid=<pid>`.
fn draw_line(line: &str, verb: &str) -> Option<(String, String, String)> {
    let mut fields = line.split_whitespace();
    if fields.next()? != verb || fields.next()? != "draw" {
        return None;
    }
    let key = fields.next()?.to_string();
    let value = fields.next()?.to_string();
    let pid = fields.next()?.strip_prefix("pid=")?.to_string();
    Some((key, value, pid))
}

/// What one load client saw acknowledged.
#[derive(Default)]
struct Acknowledged {
    /// Object key → sum of the acknowledged `Counter.add` inputs.
    adds: BTreeMap<String, i64>,
    /// Lottery key → the answer.
    draws: Vec<(String, String)>,
    steps: usize,
    adds_count: usize,
}

#[test]
fn endpoint_crashes_leave_every_invocation_exactly_once_in_effect() {
    let files = NodeFiles::new(4, "");
    let kernel = Kernel::start(&files, "warn");
    let mut endpoint = ServiceProcess::start(FIXTURE, free_port(), &[]);
    register(files.admin, &endpoint.uri);
    let ingress = files.ingress;
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<JoinHandle<Acknowledged>> = (0..8)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seen = Acknowledged::default();
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    match (t + i) % 3 {
                        0 => {
                            let key = format!("c{}", t % 3);
                            let n = 1 + (i % 4) as i64;
                            ok(ingress, &format!("/Counter/{key}/add"), &json!(n));
                            *seen.adds.entry(key).or_default() += n;
                            seen.adds_count += 1;
                        }
                        1 => {
                            let answer = ok(ingress, "/Steps/run3", &json!({ "delayMs": 15 }));
                            assert_eq!(answer, json!(6));
                            seen.steps += 1;
                        }
                        _ => {
                            let key = format!("t{t}-{i}");
                            let answer = ok_text(
                                ingress,
                                &format!("/Lottery/{key}/draw"),
                                &json!({ "settleMs": 30 }),
                            );
                            seen.draws.push((key, answer));
                        }
                    }
                }
                seen
            })
        })
        .collect();

    // Kill at varied points: after 6, 17, 2, 25 and 11 more steps started executing.
    let executions = |lines: &[String]| lines.iter().filter(|l| l.starts_with("exec ")).count();
    for wait_for in [6, 17, 2, 25, 11] {
        let before = executions(&endpoint.log.lines());
        endpoint
            .log
            .wait_until("steps executing under load", PATIENCE, |lines| {
                executions(lines) >= before + wait_for
            });
        endpoint.kill9();
        endpoint.restart();
    }
    // Progress after the last restart, then let every client finish its call in flight.
    let before = executions(&endpoint.log.lines());
    endpoint
        .log
        .wait_until("progress after the last restart", PATIENCE, |lines| {
            executions(lines) >= before + 10
        });
    stop.store(true, Ordering::SeqCst);
    let seen: Vec<Acknowledged> = clients
        .into_iter()
        .map(|c| {
            c.join()
                .expect("every accepted invocation completes with 200")
        })
        .collect();

    // Counters: exactly the sum of the acknowledged adds.
    let mut adds: BTreeMap<String, i64> = BTreeMap::new();
    for client in &seen {
        for (key, sum) in &client.adds {
            *adds.entry(key.clone()).or_default() += sum;
        }
    }
    for (key, sum) in &adds {
        let stored = ok(ingress, &format!("/Counter/{key}/get"), &json!(null));
        assert_eq!(stored, json!(sum), "Counter/{key}");
    }

    // Each draw: the handler used one value, the journaled one, on every attempt; the answer and
    // the stored state are that value.
    let lines = endpoint.log.lines();
    let mut used: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut executed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in &lines {
        if let Some((key, value, pid)) = draw_line(line, "used") {
            used.entry(key).or_default().push((value, pid));
        } else if let Some((key, value, _)) = draw_line(line, "exec") {
            executed.entry(key).or_default().push(value);
        }
    }
    let draws: Vec<&(String, String)> = seen.iter().flat_map(|c| &c.draws).collect();
    let mut replayed = 0;
    for (key, answer) in &draws {
        let stored = ok_text(ingress, &format!("/Lottery/{key}/get"), &json!(null));
        assert_eq!(&stored, answer, "Lottery/{key}: state vs answer");
        let uses = used.get(key).map(Vec::as_slice).unwrap_or_default();
        assert!(!uses.is_empty(), "Lottery/{key}: no handler used a value");
        for (value, pid) in uses {
            assert_eq!(
                value, answer,
                "Lottery/{key}: an attempt (pid {pid}) used {value}, the answer is {answer}"
            );
        }
        assert!(
            executed.get(key).is_some_and(|v| v.contains(answer)),
            "Lottery/{key}: the answer {answer} was never drawn"
        );
        replayed += usize::from(uses.len() > 1);
    }

    // The crashes landed inside handlers: some step ran again, or some draw was replayed.
    let step_runs = lines.iter().filter(|l| l.starts_with("exec step")).count();
    let steps: usize = seen.iter().map(|c| c.steps).sum();
    let acknowledged_adds: usize = seen.iter().map(|c| c.adds_count).sum();
    eprintln!(
        "{acknowledged_adds} adds, {steps} run3, {} draws ({replayed} replayed), {step_runs} step executions",
        draws.len()
    );
    assert!(
        step_runs > 3 * steps || replayed > 0,
        "no kill interrupted a handler ({step_runs} step executions for {steps} run3)"
    );
    drop(kernel);
}

/// One request a load client got answered: which object, its idempotency key, and either the
/// answer (a call) or the invocation id (a send).
#[derive(Debug, Clone)]
struct Answered {
    key: String,
    idempotency_key: String,
    answer: Value,
    /// Kernel kills before the answer came.
    kills_before: usize,
}

/// Retries `path` with `idempotency_key` until the kernel answers `want`; other answers than a
/// 5xx or a refused connection are returned as errors.
fn until_answered(
    ingress: SocketAddr,
    path: &str,
    idempotency_key: &str,
    want: u16,
) -> Result<Response, String> {
    let deadline = Instant::now() + PATIENCE;
    let mut last = String::new();
    while Instant::now() < deadline {
        let headers = [JSON, ("idempotency-key", idempotency_key)];
        match http(ingress, "POST", path, &headers, "1") {
            Ok(response) if response.status == want => return Ok(response),
            Ok(response) if response.status < 500 && response.status != 0 => {
                return Err(format!(
                    "POST {path} ({idempotency_key}): {} {}",
                    response.status, response.body
                ));
            }
            Ok(response) => {
                last = format!("{} {}", response.status, response.body);
                // The kernel is recovering: try again shortly.
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                last = e.to_string();
                // The kernel is down: be there as soon as it listens again.
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    Err(format!(
        "POST {path} ({idempotency_key}) unanswered after {PATIENCE:?}; last: {last}"
    ))
}

#[test]
fn kernel_crashes_lose_no_acknowledged_invocation_and_apply_each_request_once() {
    let files = NodeFiles::new(4, "");
    // Four partitions on three threads, whatever the machine's cores: keys, calls and sends
    // cross threads unevenly, and every restart places them again.
    let mut kernel = Kernel::start_with(
        &files,
        "warn",
        &[("HOLDFAST__NODE__PARTITION_THREADS", "3")],
    );
    let pid = kernel.pid();
    poll("three partitions' threads", Duration::from_secs(5), || {
        let named = std::fs::read_dir(format!("/proc/{pid}/task"))
            .ok()?
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with("holdfast-part-"))
            .count();
        (named == 3).then_some(())
    });
    let endpoint = ServiceProcess::start(FIXTURE, free_port(), &[]);
    register(files.admin, &endpoint.uri);
    let ingress = files.ingress;
    let stop = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(Mutex::new(Vec::<Answered>::new()));
    // Six clients call Counter.add(1) on four shared keys, two send Counter.add(1) one-way to
    // keys of their own, and one sends Steps.run3 one-way (nobody awaits its result, so its
    // ending may wait in the log for the next commit); every request has its own idempotency
    // key and is retried until answered.
    let clients: Vec<JoinHandle<Result<(), String>>> = (0..9)
        .map(|t| {
            let (stop, kills, answered) = (stop.clone(), kills.clone(), answered.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let sender = t >= 6;
                    let key = match t {
                        8 => "unkeyed".to_string(),
                        6 | 7 => format!("s{t}"),
                        _ => format!("k{}", (t + i) % 4),
                    };
                    let idempotency_key = format!("r{t}-{i}");
                    let (path, want) = match t {
                        8 => ("/Steps/run3/send".to_string(), 202),
                        6 | 7 => (format!("/Counter/{key}/add/send"), 202),
                        _ => (format!("/Counter/{key}/add"), 200),
                    };
                    let response = until_answered(ingress, &path, &idempotency_key, want)?;
                    let answer = if sender {
                        response.json()["invocationId"].clone()
                    } else {
                        response.json()
                    };
                    answered.lock().expect("answers").push(Answered {
                        key,
                        idempotency_key,
                        answer,
                        kills_before: kills.load(Ordering::SeqCst),
                    });
                }
                Ok(())
            })
        })
        .collect();
    let count = || answered.lock().expect("answers").len();
    // Waits for `n` more answers; false if a client gave up (joining it below reports why).
    let progress = |what: &str, n: usize| {
        let before = count();
        poll(what, PATIENCE, || {
            if clients.iter().any(JoinHandle::is_finished) {
                Some(false)
            } else {
                (count() >= before + n).then_some(true)
            }
        })
    };
    let mut going = true;
    for n in [60, 110, 35] {
        going = progress("answers under load", n);
        if !going {
            break;
        }
        kills.fetch_add(1, Ordering::SeqCst);
        kernel.kill9();
        kernel.restart();
    }
    if going {
        progress("answers after the last restart", 40);
    }
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        if let Err(e) = client.join().expect("client thread") {
            panic!("{e}\nkernel log:\n{}", kernel.log.text());
        }
    }
    let answered = answered.lock().expect("answers").clone();

    let mut per_key: BTreeMap<String, Vec<&Answered>> = BTreeMap::new();
    for a in &answered {
        per_key.entry(a.key.clone()).or_default().push(a);
    }
    let mut sends_before_a_kill = 0;
    let mut runs_before_a_kill = 0;
    // An accepted send completes, also when accepted before a kill: its result, by attaching.
    let completed = |a: &Answered| -> Value {
        let id = a.answer.as_str().expect("an invocation id");
        let attached =
            http_get(ingress, &format!("/restate/invocation/{id}/attach")).expect("attach");
        assert_eq!(
            attached.status, 200,
            "send to {} {} ({id}) accepted after {} kills: {}",
            a.key, a.idempotency_key, a.kills_before, attached.body
        );
        attached.json()
    };
    for (key, requests) in &per_key {
        if key == "unkeyed" {
            // Steps.run3 sent one-way: its ending may have waited in the log when a kill came.
            for a in requests {
                assert_eq!(
                    completed(a),
                    json!(6),
                    "Steps.run3 send {}",
                    a.idempotency_key
                );
                runs_before_a_kill += usize::from(a.kills_before < 3);
            }
            continue;
        }
        if key.starts_with('s') {
            for a in requests {
                completed(a);
                sends_before_a_kill += usize::from(a.kills_before < 3);
            }
        } else {
            // Strictly serialized adds of 1, each applied once: the answers are 1..=n.
            let answers: BTreeSet<i64> = requests
                .iter()
                .map(|a| a.answer.as_i64().expect("a count"))
                .collect();
            let n = requests.len() as i64;
            assert_eq!(
                answers,
                (1..=n).collect(),
                "Counter/{key}: answers of {n} distinct requests"
            );
            // Acknowledged results survive: the output by idempotency key is the answer.
            for a in requests {
                let path = format!(
                    "/restate/invocation/Counter/{key}/add/{}/output",
                    a.idempotency_key
                );
                let output = http_get(ingress, &path).expect("output");
                assert_eq!(output.status, 200, "{path}: {}", output.body);
                assert_eq!(output.json(), a.answer, "{path}");
            }
        }
        // Object state equals the number of distinct requests: each applied exactly once.
        let stored = ok(ingress, &format!("/Counter/{key}/get"), &json!(null));
        assert_eq!(
            stored,
            json!(requests.len()),
            "Counter/{key} after {} distinct requests",
            requests.len()
        );
    }
    assert!(
        sends_before_a_kill > 0,
        "no send was accepted before a kill"
    );
    assert!(
        runs_before_a_kill > 0,
        "no Steps.run3 send was accepted before a kill"
    );
    let status = kernel.terminate();
    assert!(status.success(), "holdfast exit status {status}");
}

#[test]
fn a_paused_attempt_is_fenced_and_the_result_is_the_retrys() {
    let files = NodeFiles::new(4, "");
    let kernel = Kernel::start(&files, "warn");
    let [first_port, second_port] = free_ports::<2>();
    let first = ServiceProcess::start(FIXTURE, first_port, &[]);
    // The deployment's uri is the proxy's: the endpoint behind it can change.
    let proxy = TcpProxy::start(first_port);
    register(files.admin, &proxy.uri());
    let ingress = files.ingress;
    let caller = std::thread::spawn(move || {
        let response = call(ingress, "/Lottery/z/draw", &json!({ "holdMs": 3000 }));
        (
            response.status,
            response.body.clone(),
            response.invocation_id(),
        )
    });
    let drawn_by = |service: &ServiceProcess| {
        service
            .log
            .wait_until("the draw to execute", PATIENCE, |lines| {
                lines.iter().any(|l| draw_line(l, "exec").is_some())
            });
        service
            .log
            .lines()
            .iter()
            .find_map(|l| draw_line(l, "exec"))
            .expect("an exec line")
            .1
    };
    // The first endpoint is inside the slow run: freeze it there.
    let zombie_value = drawn_by(&first);
    signal(first.pid(), "STOP");
    // Its connection breaks on the kernel's side only; the retry reaches a second endpoint
    // process behind the same uri.
    let second = ServiceProcess::start(FIXTURE, second_port, &[]);
    proxy.set_backend(second_port);
    proxy.sever();
    let retry_value = drawn_by(&second);
    assert_ne!(zombie_value, retry_value);
    // The retry runs: wake the zombie, which finishes its run and writes its result.
    signal(first.pid(), "CONT");
    poll("the resumed attempt's late writes", PATIENCE, || {
        (proxy.late_bytes() > 0).then_some(())
    });

    eprintln!(
        "zombie drew {zombie_value}, the retry drew {retry_value}; {} bytes written late by the zombie",
        proxy.late_bytes()
    );
    let (status, body, _id) = caller.join().expect("caller");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body.trim(),
        retry_value,
        "the result is the retry's ({retry_value}), not the zombie's ({zombie_value})"
    );
    let stored = ok_text(ingress, "/Lottery/z/get", &json!(null));
    assert_eq!(stored, retry_value, "stored state");
    let zombie_used = first
        .log
        .lines()
        .iter()
        .any(|l| draw_line(l, "used").is_some());
    assert!(
        !zombie_used,
        "the zombie's run result reached its handler: {}",
        first.log.text()
    );
    // The kernel goes on serving through the same uri.
    let next = ok(ingress, "/Lottery/z2/draw", &json!({}));
    let next_stored = ok(ingress, "/Lottery/z2/get", &json!(null));
    assert_eq!(next, next_stored);
    drop((kernel, first, second, proxy));
}

#[test]
fn a_handler_awaiting_a_slow_callee_suspends_and_resumes() {
    let files = NodeFiles::new(4, "");
    let kernel = Kernel::start(&files, "warn");
    let endpoint = ServiceProcess::start(FIXTURE, free_port(), &[("SUSPEND_AFTER_MS", "200")]);
    register(files.admin, &endpoint.uri);
    let gate = files.dir.path().join("gate");
    let ingress = files.ingress;
    let gate_text = gate.display().to_string();
    let caller = std::thread::spawn(move || call(ingress, "/Relay/call", &json!(gate_text)));

    // The caller's attempt suspends and its stream ends while the callee is still working.
    endpoint.log.wait_until(
        "Relay.call to suspend and its stream to close",
        PATIENCE,
        |lines| {
            lines.iter().any(|l| l == "suspension sent Relay.call")
                && lines.iter().any(|l| l == "stream closed Relay.call")
                && lines.iter().any(|l| l.starts_with("exec wait"))
        },
    );
    assert!(
        endpoint.log.count("resumed Relay.call") == 0 && !caller.is_finished(),
        "Relay.call went on before its callee finished:\n{}",
        endpoint.log.text()
    );
    std::fs::write(&gate, "open").expect("open the gate");

    let response = caller.join().expect("caller");
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.json(), json!("relayed slow opened"));
    let id = response.invocation_id();
    let lines = endpoint.log.lines();
    let position = |wanted: &str| lines.iter().position(|l| l.starts_with(wanted));
    let closed = position("stream closed Relay.call").expect("closed");
    let resumed = position("resumed Relay.call").expect("resumed");
    assert!(closed < resumed, "resumed before the stream closed");
    assert!(
        lines
            .iter()
            .filter(|l| **l == format!("begin Relay.call {id}"))
            .count()
            >= 2,
        "the resumption is a new attempt replaying the journal:\n{}",
        lines.join("\n")
    );
    assert_eq!(endpoint.log.count("resumed Relay.call"), 1);
    assert_eq!(
        endpoint.log.count("exec wait"),
        1,
        "the callee's run executed once"
    );
    drop(kernel);
}

#[test]
fn garbage_frames_fail_the_attempt_over_to_a_retry_and_the_kernel_keeps_serving() {
    let files = NodeFiles::new(4, "");
    // The kernel's own default log filter: what an operator sees.
    let kernel = Kernel::start(&files, "info,openraft=warn");
    let endpoint = ServiceProcess::start(FIXTURE, free_port(), &[("GARBAGE_ANSWERS", "4")]);
    register(files.admin, &endpoint.uri);
    let ingress = files.ingress;
    let flaky = std::thread::spawn(move || call(ingress, "/Flaky/echo", &json!("hi")));
    endpoint
        .log
        .wait_until("a garbage answer", PATIENCE, |lines| {
            lines.iter().any(|l| l.starts_with("garbage 1 "))
        });
    // Meanwhile other invocations are served.
    for n in 1..=10 {
        assert_eq!(ok(ingress, "/Counter/other/add", &json!(1)), json!(n));
    }
    assert_eq!(ok(ingress, "/Steps/run3", &json!({})), json!(6));

    let response = flaky.join().expect("Flaky caller");
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.json(), json!("echo hi"));
    assert_eq!(
        endpoint.log.count("garbage "),
        4,
        "one attempt per garbage answer"
    );
    assert_eq!(endpoint.log.count("exec Flaky.echo"), 1);
    // Each failed attempt is on record with its reason, findable by the invocation id.
    let id = response.invocation_id();
    let log = kernel.log.lines();
    let recorded = log
        .iter()
        .filter(|l| l.contains(&id) && l.contains("protocol violation"))
        .count();
    assert!(
        recorded >= 4,
        "{recorded} of 4 failed attempts of {id} recorded with their protocol violation; kernel log:\n{}",
        log.join("\n")
    );
    drop(kernel);
}
