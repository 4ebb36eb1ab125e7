//! `holdfast cluster status`: `GET /cluster` as two tables (members, then partitions with
//! their replicas), or the JSON itself.

use super::Ctx;

/// What `holdfast cluster` does.
#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// Show the members and, per partition, its leader, term and replicas (`GET /cluster`).
    Status,
}

/// Runs `command`.
pub fn run(ctx: &Ctx<'_>, command: ClusterCommand) -> anyhow::Result<()> {
    let ClusterCommand::Status = command;
    let (view, body): (serde_json::Value, _) = ctx.get("/cluster")?;
    ctx.print(&body, || render(&view))
}

/// The cluster view as two aligned tables: members, then partitions with their replicas.
fn render(view: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let empty = Vec::new();
    let mut out = format!(
        "cluster {} as seen from node {}\n\n",
        text(&view["cluster"]),
        text(&view["node"])
    );
    out.push_str(&format!(
        "{:<6} {:<24} {}\n",
        "NODE", "ADDRESS", "CONNECTED"
    ));
    for node in view["nodes"].as_array().unwrap_or(&empty) {
        let alive = if node["alive"].as_bool() == Some(true) {
            "yes"
        } else {
            "no"
        };
        out.push_str(&format!(
            "{:<6} {:<24} {alive}\n",
            text(&node["id"]),
            text(&node["address"])
        ));
    }
    out.push_str(&format!(
        "\n{:<10} {:<7} {:<6} {}\n",
        "PARTITION", "LEADER", "TERM", "REPLICAS (node: applied index, lag)"
    ));
    for partition in view["partitions"].as_array().unwrap_or(&empty) {
        let replicas: Vec<String> = partition["replicas"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .map(|r| {
                format!(
                    "{}: {}, {}",
                    text(&r["node"]),
                    text(&r["applied_index"]),
                    text(&r["lag"])
                )
            })
            .collect();
        out.push_str(&format!(
            "{:<10} {:<7} {:<6} {}\n",
            text(&partition["partition"]),
            text(&partition["leader"]),
            text(&partition["term"]),
            replicas.join("; ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn the_cluster_view_renders_as_tables() {
        let view = serde_json::json!({
            "cluster": "prod", "node": 2,
            "nodes": [{"id": 1, "address": "10.0.0.1:5122", "alive": true},
                      {"id": 2, "address": "10.0.0.2:5122", "alive": false}],
            "partitions": [{"partition": 0, "leader": 1, "term": 4,
                            "replicas": [{"node": 1, "applied_index": 12, "lag": 0},
                                         {"node": 2, "applied_index": null, "lag": null}]},
                           {"partition": 1, "leader": null, "term": null, "replicas": []}]
        });
        let text = render(&view);
        assert!(
            text.starts_with("cluster prod as seen from node 2\n"),
            "{text}"
        );
        assert!(
            text.contains("2      10.0.0.2:5122            no\n"),
            "{text}"
        );
        assert!(
            text.contains("0          1       4      1: 12, 0; 2: -, -\n"),
            "{text}"
        );
        assert!(text.contains("1          -       -      \n"), "{text}");
    }
}
