//! Kernel → endpoint identity (Restate's request identity v1): the kernel signs discovery and
//! every attempt with its own key; an endpoint configured with `withIdentityV1(<its public key>)`
//! serves the kernel and refuses anyone else with 401.

use std::process::Command;

use holdfast_e2e::{NodeFiles, ServiceProcess, free_port, http, register, repo_root, wait_healthy};

/// Writes a one-service endpoint script into `dir` that accepts only requests signed with the key
/// in `$IDENTITY_KEY`, and returns its path.
fn identity_endpoint(dir: &std::path::Path) -> std::path::PathBuf {
    let sdk = repo_root().join("sdk-ts/dist/src/index.js");
    let script = format!(
        r#"import * as restate from "file://{sdk}";
const greeter = restate.service({{
  name: "greeter",
  handlers: {{ greet: async (_ctx, name) => `Hello ${{name}}` }},
}});
const port = await restate
  .endpoint()
  .bind(greeter)
  .withIdentityV1(process.env.IDENTITY_KEY)
  .listen(Number(process.env.PORT), "127.0.0.1");
console.log(`identity endpoint listening on ${{port}}`);
"#,
        sdk = sdk.display()
    );
    let path = dir.join("identity-endpoint.mjs");
    std::fs::write(&path, script).expect("write endpoint script");
    path
}

/// `holdfast keys public` for `files`: the node's `publickeyv1_…` key.
fn public_key(files: &NodeFiles) -> String {
    let output = files.run(&["keys", "public"]);
    assert!(
        output.status.success(),
        "holdfast keys public: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let key = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(key.starts_with("publickeyv1_"), "{key}");
    key
}

/// A plain HTTP/2 (prior knowledge) request to the endpoint, unsigned: its status and body.
fn unsigned_h2(method: &str, url: &str) -> (String, String) {
    let output = Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
        ])
        .args(["-H", "content-type: application/vnd.holdfast.invocation.v1"])
        .arg(url)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.to_owned(), body.to_owned())
}

#[test]
fn an_endpoint_verifying_the_kernels_key_serves_the_kernel_and_refuses_anyone_else() {
    let files = NodeFiles::new(2, "");
    let key = public_key(&files);
    // The key file was created owner-only, and the key is stable across calls.
    let key_file = files.data_dir.join("signing-key");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file)
            .expect("signing-key created")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "{}", key_file.display());
    assert_eq!(public_key(&files), key);

    let mut node = files.serve();
    wait_healthy(files.admin, &mut node);
    let script = identity_endpoint(files.dir.path());
    let script = script.to_str().expect("utf-8 path");
    let endpoint = ServiceProcess::start(script, free_port(), &[("IDENTITY_KEY", &key)]);

    // Discovery and the invocation are signed by the kernel: both pass.
    register(files.admin, &endpoint.uri);
    let greeted = http(
        files.ingress,
        "POST",
        "/greeter/greet",
        &[("content-type", "application/json")],
        "\"Ada\"",
    )
    .expect("invoke greeter");
    assert_eq!(greeted.status, 200, "{}", greeted.body);
    assert_eq!(greeted.body, "\"Hello Ada\"");

    // The same endpoint refuses unsigned requests made directly, discovery included.
    let base = endpoint.uri.trim_end_matches('/');
    let (status, body) = unsigned_h2("POST", &format!("{base}/invoke/greeter/greet"));
    assert_eq!(status, "401", "{body}");
    assert!(body.contains("unauthorized"), "{body}");
    let (status, body) = unsigned_h2("GET", &format!("{base}/discover"));
    assert_eq!(status, "401", "{body}");

    // An endpoint expecting another node's key refuses this kernel's discovery.
    let other = NodeFiles::new(1, "");
    let other_key = public_key(&other);
    assert_ne!(other_key, key);
    let stranger = ServiceProcess::start(script, free_port(), &[("IDENTITY_KEY", &other_key)]);
    let refused = http(
        files.admin,
        "POST",
        "/deployments",
        &[("content-type", "application/json")],
        &serde_json::json!({ "uri": stranger.uri }).to_string(),
    )
    .expect("POST /deployments");
    assert!(!(200..300).contains(&refused.status), "{}", refused.body);
    assert!(refused.body.contains("401"), "{}", refused.body);
    drop(node);
}
