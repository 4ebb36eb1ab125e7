// Overview: invocation counts by status, services, deployments, and the node's partitions.

import * as api from "./api.js";
import { h, fill, table, section, errorBox, count, time, STATUSES, pageHead } from "./dom.js";

/** @param {import("./app.js").Page} page */
export async function render(page) {
  const tiles = h("div", { class: "tiles", id: "status-tiles" });
  const services = h("div");
  const deployments = h("div");
  const partitions = h("div");
  fill(
    page.main,
    pageHead("Overview", "What this node runs and how it is doing."),
    tiles,
    h(
      "div",
      { class: "cards" },
      section("Services", services, [h("a", { href: "#/state" }, "State →")]),
      section("Deployments", deployments, [h("a", { href: "#/deployments" }, "Manage →")]),
      section("Partitions", partitions, [h("a", { href: "#/cluster" }, "Cluster →")]),
    ),
  );
  const load = async () => {
    await Promise.all([
      counts(tiles).catch((e) => fill(tiles, errorBox(e))),
      serviceTable(services).catch((e) => fill(services, errorBox(e))),
      deploymentTable(deployments).catch((e) => fill(deployments, errorBox(e))),
      partitionTable(partitions).catch((e) => fill(partitions, errorBox(e))),
    ]);
  };
  await load();
  page.every(5000, load);
}

/** @param {HTMLElement} into */
async function counts(into) {
  const rows = await api.rows(
    "SELECT status, completion_result, count(*) AS n FROM sys_invocation GROUP BY status, completion_result",
  );
  /** @type {Map<string, number>} */
  const by = new Map();
  let total = 0;
  for (const row of rows) {
    const name =
      row.status === "completed" ? (row.completion_result === "success" ? "succeeded" : "failed") : row.status;
    by.set(name, (by.get(name) ?? 0) + Number(row.n));
    total += Number(row.n);
  }
  const names = [...STATUSES.filter((s) => s !== "completed"), "succeeded", "failed"];
  /** @param {string} status */
  const filter = (status) => `#/invocations?status=${status}`;
  fill(
    into,
    h(
      "a",
      { class: "tile", href: "#/invocations" },
      h("div", { class: "n" }, count(total)),
      h("div", { class: "label" }, "invocations"),
    ),
    names.map((name) =>
      h(
        "a",
        { class: `tile status-${name}`, href: filter(name), "data-count": name },
        h("div", { class: "n" }, count(by.get(name) ?? 0)),
        h("div", { class: "label" }, name),
      ),
    ),
  );
}

const SERVICE_TYPES = /** @type {Record<string, string>} */ ({
  Service: "service",
  VirtualObject: "virtual object",
  Workflow: "workflow",
});

/** @param {HTMLElement} into */
async function serviceTable(into) {
  const services = (await api.services()).sort((a, b) => a.name.localeCompare(b.name));
  fill(
    into,
    table(
      [
        {
          label: "Service",
          cell: (s) => h("a", { href: `#/invocations?service=${encodeURIComponent(s.name)}` }, s.name),
        },
        { label: "Type", cell: (s) => h("span", { class: "pill" }, SERVICE_TYPES[s.ty] ?? s.ty) },
        { label: "Handlers", class: "num", cell: (s) => h("span", { title: s.handlers.map((x) => x.name).join(", ") }, s.handlers.length) },
        { label: "Revision", class: "num", cell: (s) => h("span", { title: s.deployment_id }, s.revision) },
      ],
      services,
      "No services: register a deployment.",
    ),
  );
}

/** @param {HTMLElement} into */
async function deploymentTable(into) {
  const deployments = (await api.deployments()).sort((a, b) => b.created_at.localeCompare(a.created_at));
  fill(
    into,
    table(
      [
        { label: "Endpoint", cell: (d) => h("code", null, d.uri) },
        { label: "Services", cell: (d) => d.services.map((s) => s.name).join(", ") },
        { label: "Registered", cell: (d) => time(d.created_at) },
      ],
      deployments,
      "No deployments yet.",
    ),
  );
}

/** @param {HTMLElement} into */
async function partitionTable(into) {
  const health = await api.health();
  const healthy = health.partitions.filter((p) => p.status === "ok").length;
  fill(
    into,
    h(
      "div",
      { class: "card-body" },
      h(
        "div",
        { class: "row" },
        h("span", { class: `pill ${health.status === "ok" ? "ok" : "warn"}` }, health.status),
        `${healthy} of ${health.partitions.length} partitions have a leader; metadata leader: `,
        h("strong", null, health.metadata?.leader == null ? "none" : `node ${health.metadata.leader}`),
      ),
    ),
    table(
      [
        { label: "Partition", class: "num", cell: (p) => p.id },
        {
          label: "Status",
          cell: (p) => h("span", { class: `pill ${p.status === "ok" ? "ok" : "bad"}` }, p.status),
        },
        { label: "Leader", class: "num", cell: (p) => (p.leader == null ? "—" : `node ${p.leader}`) },
        { label: "Term", class: "num", cell: (p) => p.term ?? "—" },
        { label: "Applied", class: "num", cell: (p) => (p.applied_index == null ? "—" : count(p.applied_index)) },
      ],
      health.partitions,
    ),
  );
}
