//! Configuration through the real binary: every shipped file validates, and bad input stops the
//! start with exit status 2 and a message naming the key and where it came from.

use holdfast_e2e::{NodeFiles, holdfast_bin, terminate, wait_healthy};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn deploy_dir() -> PathBuf {
    holdfast_e2e::repo_root().join("deploy")
}

fn check(file: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(holdfast_bin())
        .args(["serve", "--check", "--config"])
        .arg(file)
        .envs(env.iter().copied())
        .output()
        .expect("run holdfast")
}

fn write_config(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn refused(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn every_deploy_file_passes_the_check() {
    let mut checked = 0;
    for entry in std::fs::read_dir(deploy_dir()).expect("deploy dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let output = check(&path, &[]);
            assert!(
                output.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&output.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "expected single-node.toml and cluster.toml");
}

#[test]
fn serve_check_without_a_file_uses_the_embedded_default() {
    let output = Command::new(holdfast_bin())
        .args(["serve", "--check"])
        .env_remove("HOLDFAST_DATA_DIR")
        .output()
        .expect("run holdfast");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    for expected in [
        "8 partitions",
        "./holdfast-data",
        "127.0.0.1:9070",
        "127.0.0.1:8080",
        "127.0.0.1:9071",
    ] {
        assert!(stdout.contains(expected), "{expected} missing in {stdout}");
    }
}

#[test]
fn unknown_key_is_refused_naming_key_and_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_config(&dir, "[admin]\nbnd_address = \"127.0.0.1:1\"\n");
    let stderr = refused(&check(&file, &[]));
    assert!(stderr.contains("admin.bnd_address"), "{stderr}");
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
}

#[test]
fn wrong_type_is_refused_naming_key_and_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_config(&dir, "[cluster]\npartitions = \"eight\"\n");
    let stderr = refused(&check(&file, &[]));
    assert!(stderr.contains("cluster.partitions"), "{stderr}");
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
}

#[test]
fn invalid_value_from_the_environment_names_the_variable() {
    let file = deploy_dir().join("single-node.toml");
    let stderr = refused(&check(&file, &[("HOLDFAST__CLUSTER__PARTITIONS", "0")]));
    assert!(stderr.contains("HOLDFAST__CLUSTER__PARTITIONS"), "{stderr}");
    assert!(stderr.contains("cluster.partitions"), "{stderr}");
}

#[test]
fn missing_file_is_refused() {
    let stderr = refused(&check(Path::new("/nonexistent/holdfast.toml"), &[]));
    assert!(stderr.contains("/nonexistent/holdfast.toml"), "{stderr}");
}

#[test]
fn a_data_dir_of_another_cluster_is_refused_naming_the_key() {
    let files = NodeFiles::new(2, "");
    let mut node = files.serve();
    wait_healthy(files.admin, &mut node);
    let (status, stderr) = terminate(node);
    assert!(status.success(), "{status}: {stderr}");

    // The same node and data dir, but a configuration naming another cluster.
    let text = std::fs::read_to_string(&files.config).expect("read config");
    assert_eq!(text.matches("[cluster]\n").count(), 1, "{text}");
    let renamed = files.dir.path().join("renamed.toml");
    std::fs::write(
        &renamed,
        text.replace("[cluster]\n", "[cluster]\nname = \"other-cluster\"\n"),
    )
    .expect("write config");
    let output = Command::new(holdfast_bin())
        .args(["serve", "--config"])
        .arg(&renamed)
        .env("HOLDFAST_LOG", "warn")
        .output()
        .expect("run holdfast");
    let stderr = refused(&output);
    assert!(stderr.contains("cluster.name"), "{stderr}");
    assert!(stderr.contains("\"holdfast\""), "{stderr}");
    assert!(stderr.contains("\"other-cluster\""), "{stderr}");
    assert!(
        stderr.contains(&files.data_dir.display().to_string()),
        "{stderr}"
    );

    // The refusal changed nothing: the original configuration still starts.
    let mut node = files.serve();
    wait_healthy(files.admin, &mut node);
    let (status, stderr) = terminate(node);
    assert!(status.success(), "{status}: {stderr}");
}
