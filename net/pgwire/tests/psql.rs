//! The real psql binary against the endpoint: meta-commands (`\dt`, `\d`,
//! `\d+`, `\l`, `\dn`, `\du`), queries and error recovery between commands.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

const PSQL: &str = "/usr/bin/psql";

struct Output {
    status: i32,
    stdout: String,
    stderr: String,
}

/// Runs psql with `args` after the connection options. psql is required
/// (Debian's postgresql-client; `.ci/run` installs it).
async fn psql(addr: SocketAddr, args: &[&str]) -> Output {
    assert!(
        Path::new(PSQL).exists(),
        "{PSQL} not found: install postgresql-client"
    );
    let mut command = Command::new(PSQL);
    command
        .args([
            "-h",
            &addr.ip().to_string(),
            "-p",
            &addr.port().to_string(),
            "-U",
            "tester",
            "-d",
            "holdfast",
            "-X",
            "-w",
        ])
        .args(args)
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGPASSWORD")
        .env_remove("PGSERVICE");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("psql task")
        .expect("run psql");
    Output {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn assert_clean(out: &Output) {
    assert_eq!(
        out.status, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert!(!out.stderr.contains("ERROR"), "stderr:\n{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dt_lists_the_tables() {
    let server = common::start(common::default_limits()).await;
    let out = psql(server.local_addr(), &["-A", "-t", "-c", "\\dt"]).await;
    assert_clean(&out);
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        vec![
            "public|state|table|tester",
            "public|sys_invocation|table|tester"
        ]
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_describes_columns_with_types() {
    let server = common::start(common::default_limits()).await;
    let out = psql(server.local_addr(), &["-c", "\\d sys_invocation"]).await;
    assert_clean(&out);
    assert!(
        out.stdout.contains("Table \"public.sys_invocation\""),
        "{}",
        out.stdout
    );
    let row = |column: &str| {
        out.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{column} ")))
            .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(row("id"), vec!["id", "text", "", "not null", ""]);
    assert_eq!(row("retry_count")[1], "integer");
    assert_eq!(row("attempt")[1], "smallint");
    assert_eq!(row("journal_len")[1], "bigint");
    assert_eq!(row("score")[1], "double precision");
    assert_eq!(row("ratio")[1], "real");
    assert_eq!(row("completed")[1], "boolean");
    assert_eq!(row("created_at")[1], "timestamp with time zone");
    assert_eq!(row("day")[1], "date");
    assert_eq!(row("payload")[1], "bytea");
    assert_eq!(row("target")[3], "");

    // Verbose variant, unknown table.
    let out = psql(server.local_addr(), &["-c", "\\d+ state", "-c", "\\d nope"]).await;
    assert!(
        out.stdout.contains("Table \"public.state\""),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("Storage"), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("Did not find any relation named \"nope\""),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("ERROR"), "{}", out.stderr);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_meta_commands_work() {
    let server = common::start(common::default_limits()).await;
    let out = psql(
        server.local_addr(),
        &[
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "\\l",
            "-c",
            "\\dn",
            "-c",
            "\\du",
            "-c",
            "\\dt+",
            "-c",
            "\\d",
            "-c",
            "\\dv",
            "-c",
            "\\df",
            "-c",
            "\\dT",
            "-c",
            "\\dt pg_catalog.pg_class",
        ],
    )
    .await;
    assert_clean(&out);
    assert!(out.stdout.contains("holdfast"), "{}", out.stdout);
    assert!(out.stdout.contains("List of schemas"), "{}", out.stdout);
    assert!(out.stdout.contains("pg_class"), "{}", out.stdout);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_prints_rows() {
    let server = common::start(common::default_limits()).await;
    let out = psql(
        server.local_addr(),
        &[
            "-A",
            "-t",
            "-c",
            "SELECT id, retry_count, completed FROM sys_invocation ORDER BY id",
        ],
    )
    .await;
    assert_clean(&out);
    assert_eq!(out.stdout, "inv_1|0|t\ninv_2|3|f\ninv_3|1|\n");

    let out = psql(
        server.local_addr(),
        &["-c", "SELECT key, value FROM state ORDER BY key"],
    )
    .await;
    assert_clean(&out);
    assert!(out.stdout.contains(" key "), "{}", out.stdout);
    assert!(out.stdout.contains("owner | \\x626f62"), "{}", out.stdout);
    assert!(out.stdout.contains("(3 rows)"), "{}", out.stdout);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_printed_and_the_next_command_runs() {
    let server = common::start(common::default_limits()).await;
    let out = psql(
        server.local_addr(),
        &[
            "-v",
            "ON_ERROR_STOP=0",
            "-v",
            "VERBOSITY=verbose",
            "-A",
            "-t",
            "-c",
            "SELEC 1",
            "-c",
            "SELECT 'after syntax error'",
            "-c",
            "SELECT * FROM missing",
            "-c",
            "SELECT 'after unknown table'",
        ],
    )
    .await;
    assert!(out.stderr.contains("ERROR:  42601"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("ERROR:  42P01: relation \"missing\" does not exist"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout, "after syntax error\nafter unknown table\n");
    server.shutdown().await.expect("shutdown");
}
