//! `holdfast deployments register|list|describe|remove`: `/deployments` of the admin API.

use super::services::{Service, service_table};
use super::table::{Table, fields, width};
use super::{Ctx, or_dash, parse, segment};
use serde::Deserialize;

/// What `holdfast deployments` does.
#[derive(clap::Subcommand, Debug)]
pub enum DeploymentsCommand {
    /// Register the service endpoint at URI: discover its services and add them
    /// (`POST /deployments`).
    Register {
        /// The endpoint, `http://host:port[/path]` or `https://…`.
        uri: String,
        /// Replace an existing deployment at the same URI even if its services changed
        /// incompatibly.
        #[arg(long)]
        force: bool,
    },
    /// List the deployments with their services and revisions.
    List,
    /// Show a deployment and its services in full.
    Describe {
        /// The deployment id (`dp_…`).
        id: String,
    },
    /// Remove a deployment. Refused while it serves the newest revision of a service, unless
    /// `--force` (which drops those services with it).
    Remove {
        /// The deployment id (`dp_…`).
        id: String,
        /// Remove it even if services still use it.
        #[arg(long)]
        force: bool,
    },
}

/// `{"deployments": […]}`.
#[derive(Deserialize)]
struct DeploymentList {
    deployments: Vec<Summary>,
}

/// A deployment in the listing.
#[derive(Deserialize)]
struct Summary {
    id: String,
    uri: String,
    created_at: String,
    services: Vec<Revision>,
}

/// A service revision a deployment serves.
#[derive(Deserialize)]
struct Revision {
    name: String,
    revision: u32,
}

/// A deployment in full (`GET /deployments/{id}`, and `POST /deployments`' answer, which has
/// no uri or time).
#[derive(Deserialize)]
struct Detail {
    id: String,
    uri: Option<String>,
    created_at: Option<String>,
    protocol_type: Option<String>,
    min_protocol_version: u32,
    max_protocol_version: u32,
    services: Vec<Service>,
}

/// Runs `command`.
pub fn run(ctx: &Ctx<'_>, command: DeploymentsCommand) -> anyhow::Result<()> {
    match command {
        DeploymentsCommand::Register { uri, force } => {
            let response = ctx.admin.send_json(
                "POST",
                "/deployments",
                &serde_json::json!({ "uri": uri, "force": force }),
            )?;
            let detail: Detail = parse(&response.body)?;
            let verb = if response.status == 201 {
                "registered"
            } else {
                "already registered"
            };
            ctx.print(&response.body, || {
                format!(
                    "{verb} {} at {uri}\n\n{}",
                    detail.id,
                    render_detail(&detail)
                )
            })
        }
        DeploymentsCommand::List => {
            let (list, body): (DeploymentList, _) = ctx.get("/deployments")?;
            ctx.print(&body, || render_list(&list))
        }
        DeploymentsCommand::Describe { id } => {
            let (detail, body): (Detail, _) = ctx.get(&format!("/deployments/{}", segment(&id)))?;
            ctx.print(&body, || render_detail(&detail))
        }
        DeploymentsCommand::Remove { id, force } => {
            let path = format!("/deployments/{}?force={force}", segment(&id));
            ctx.admin.send_empty("DELETE", &path)?;
            ctx.print_value(&serde_json::json!({ "id": id, "removed": true }), || {
                format!("removed {id}\n")
            })
        }
    }
}

fn render_list(list: &DeploymentList) -> String {
    let mut table = Table::new(&["ID", "URI", "CREATED", "SERVICES"]).whole(0);
    for d in &list.deployments {
        let services: Vec<String> = d
            .services
            .iter()
            .map(|s| format!("{}@{}", s.name, s.revision))
            .collect();
        table.row(vec![
            d.id.clone(),
            d.uri.clone(),
            d.created_at.clone(),
            services.join(", "),
        ]);
    }
    if table.is_empty() {
        return "no deployments\n".to_owned();
    }
    table.render(width())
}

fn render_detail(detail: &Detail) -> String {
    let mut out = fields(&[
        ("deployment", detail.id.clone()),
        ("uri", or_dash(detail.uri.as_deref())),
        ("created", or_dash(detail.created_at.as_deref())),
        (
            "protocol",
            format!(
                "{} v{}–v{}",
                or_dash(detail.protocol_type.as_deref()),
                detail.min_protocol_version,
                detail.max_protocol_version
            ),
        ),
    ]);
    out.push('\n');
    out.push_str(&service_table(&detail.services).render(width()));
    out
}
