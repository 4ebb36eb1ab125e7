//! Durability under kill -9: a real process proposes concurrently and prints every
//! acknowledgement; it is killed mid-run, and the recovered state must hold every acknowledged
//! command exactly once and nothing torn. Rounds run back to back on one data dir, so recovery
//! itself is crashed into as well. `HOLDFAST_CRASH_ROUNDS` sets the number of rounds (default 3).

use holdfast_e2e::{NodeFiles, holdfast_bin, terminate};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout, Command, Stdio};

const VALUE_BYTES: usize = 64;
const PROPOSERS: &str = "16";

/// The value the bench writes for proposer `p`'s `seq`-th command (see `holdfast bench log`).
fn expected_value(p: u64, seq: u64) -> String {
    let mut value = format!("{p}:{seq}:");
    while value.len() < VALUE_BYTES {
        value.push('x');
    }
    value
}

/// Parses an entry name `r<round>p<proposer>-<seq>`.
fn parse_name(name: &str) -> Option<(u64, u64, u64)> {
    let rest = name.strip_prefix('r')?;
    let (round, rest) = rest.split_once('p')?;
    let (p, seq) = rest.split_once('-')?;
    Some((round.parse().ok()?, p.parse().ok()?, seq.parse().ok()?))
}

type Acks = BTreeSet<(u64, u64)>;

/// Starts `holdfast bench log` printing acknowledgements, tagging entries with `r<round>`.
fn spawn_bench(files: &NodeFiles, round: u64) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new(holdfast_bin())
        .args([
            "bench",
            "log",
            "--spread",
            "all",
            "--seconds",
            "600",
            "--print-acks",
        ])
        .args([
            "--proposers",
            PROPOSERS,
            "--value-bytes",
            &VALUE_BYTES.to_string(),
        ])
        .args(["--tag", &format!("r{round}")])
        .arg("--config")
        .arg(&files.config)
        .env("HOLDFAST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn holdfast bench log");
    let stdout = child.stdout.take().expect("stdout");
    (child, BufReader::new(stdout).lines())
}

/// Records an `ack <proposer> <seq> <partition> <index>` line; other lines are returned.
fn record(line: &str, acked: &mut Acks) -> Option<String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if let ["ack", p, seq, _partition, _index] = fields[..] {
        acked.insert((p.parse().expect("proposer"), seq.parse().expect("seq")));
        return None;
    }
    Some(line.to_string())
}

/// Reads acknowledgements until at least `count` were seen.
fn read_acks(lines: &mut Lines<BufReader<ChildStdout>>, count: usize, acked: &mut Acks) {
    for line in lines.by_ref() {
        record(&line.expect("read ack"), acked);
        if acked.len() >= count {
            return;
        }
    }
    panic!("bench ended after {} acks, expected {count}", acked.len());
}

/// Recovers the node with `holdfast dump` and checks the state against every round's acks:
/// each acknowledged command present, every entry intact, each command applied once.
/// Returns the entries present.
fn verify(files: &NodeFiles, acked: &BTreeMap<u64, Acks>) -> BTreeSet<(u64, u64, u64)> {
    let dump = files.run(&["dump"]);
    assert!(
        dump.status.success(),
        "dump: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let state: serde_json::Value = serde_json::from_slice(&dump.stdout).expect("dump is JSON");
    let last_round = acked.keys().last().copied().unwrap_or(0);
    let mut present = BTreeSet::new();
    let mut commands_applied = 0;
    for partition in state["partitions"].as_array().expect("partitions") {
        commands_applied += partition["summary"]["commands_applied"]
            .as_u64()
            .expect("count");
        for entry in partition["entries"].as_array().expect("entries") {
            let name = entry["name"].as_str().expect("name");
            let (r, p, seq) = parse_name(name).unwrap_or_else(|| panic!("foreign entry {name}"));
            assert!(
                r <= last_round,
                "entry {name} from a round that has not run"
            );
            // Nothing torn: every present entry holds exactly the value that was proposed.
            assert_eq!(entry["value"], expected_value(p, seq), "entry {name}");
            assert!(present.insert((r, p, seq)), "entry {name} twice");
        }
    }
    for (r, acks) in acked {
        for (p, seq) in acks {
            assert!(
                present.contains(&(*r, *p, *seq)),
                "acknowledged r{r}p{p}-{seq} lost after round {last_round}"
            );
        }
    }
    // Each command creates one distinct entry, so applying any command twice (or losing an
    // applied one) would make the counter and the entry count disagree.
    assert_eq!(
        commands_applied,
        present.len() as u64,
        "commands applied vs entries present after round {last_round}"
    );
    present
}

#[test]
fn acknowledged_commands_survive_kill_9_exactly_once() {
    let rounds: u64 = std::env::var("HOLDFAST_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let files = NodeFiles::new(4, "");
    let mut acked: BTreeMap<u64, Acks> = BTreeMap::new();
    for round in 0..rounds {
        let (mut child, mut lines) = spawn_bench(&files, round);
        // Vary the kill point so crashes land at different moments of the batching cycle.
        let kill_after = 200 + (round as usize * 389) % 1500;
        let mut acks = Acks::new();
        read_acks(&mut lines, kill_after, &mut acks);
        child.kill().expect("kill -9");
        // Acknowledgements printed before the kill are still in the pipe; they count too.
        for line in lines.map_while(Result::ok) {
            record(&line, &mut acks);
        }
        child.wait().expect("reap");
        acked.insert(round, acks);
        verify(&files, &acked);
    }
}

#[test]
fn sigterm_finishes_in_flight_commits_and_loses_nothing() {
    let files = NodeFiles::new(4, "");
    let (child, mut lines) = spawn_bench(&files, 0);
    let mut acks = Acks::new();
    read_acks(&mut lines, 300, &mut acks);
    let (status, _) = terminate(child);
    let mut summary = None;
    for line in lines.map_while(Result::ok) {
        summary = record(&line, &mut acks).or(summary);
    }
    assert!(status.success(), "bench exit status {status}");
    let summary: serde_json::Value =
        serde_json::from_str(&summary.expect("summary line")).expect("summary JSON");
    assert_eq!(
        summary["ops"],
        acks.len(),
        "every proposal in flight was acknowledged"
    );
    let acked = BTreeMap::from([(0, acks.clone())]);
    let present = verify(&files, &acked);
    // A graceful stop leaves no committed-but-unacknowledged command behind.
    assert_eq!(present.len(), acks.len());
}
