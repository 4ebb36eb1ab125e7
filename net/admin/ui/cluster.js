// Cluster: the nodes, and each partition's leader and replicas as this node sees them
// (GET /cluster).

import * as api from "./api.js";
import { h, fill, table, section, errorBox, count, pageHead } from "./dom.js";

/** @param {import("./app.js").Page} page */
export async function render(page) {
  const body = h("div", { id: "cluster-view" });
  fill(
    page.main,
    pageHead("Cluster", "Members, and where every partition's replicas live."),
    body,
  );
  const load = async () => {
    try {
      const view = await api.cluster();
      if (!page.alive()) return;
      const leaderless = view.partitions.filter((p) => p.leader == null).length;
      fill(
        body,
        h(
          "div",
          { class: "tiles" },
          tile(view.cluster, "cluster"),
          tile(`node ${view.node}`, "answering"),
          tile(String(view.nodes.length), "nodes"),
          tile(String(view.nodes.filter((n) => n.alive).length), "reachable"),
          tile(String(view.partitions.length), "partitions"),
          tile(String(leaderless), "without a leader", leaderless ? "status-failed" : "status-succeeded"),
        ),
        section(
          "Nodes",
          table(
            [
              { label: "Node", class: "num", cell: (n) => h("strong", null, n.id) },
              { label: "Address", cell: (n) => h("code", null, n.address) },
              {
                label: "Reachable",
                cell: (n) =>
                  h("span", { class: `pill ${n.alive ? "ok" : "bad"}` }, n.id === view.node ? "this node" : n.alive ? "connected" : "unreachable"),
              },
              {
                label: "Leads",
                class: "num",
                cell: (n) => view.partitions.filter((p) => p.leader === n.id).length,
              },
            ],
            view.nodes,
          ),
        ),
        view.removed.length ? h("p", { class: "muted" }, `Removed nodes: ${view.removed.join(", ")}`) : null,
        section(
          "Partitions",
          table(
            [
              { label: "Partition", class: "num", cell: (p) => p.partition },
              {
                label: "Leader",
                cell: (p) => (p.leader == null ? h("span", { class: "pill bad" }, "none") : h("span", { class: "pill ok" }, `node ${p.leader}`)),
              },
              { label: "Term", class: "num", cell: (p) => p.term ?? "—" },
              {
                label: "Replicas (applied index · lag)",
                cell: (p) =>
                  p.replicas.length === 0
                    ? h("span", { class: "muted" }, "not hosted here")
                    : p.replicas.map((r) =>
                        h(
                          "span",
                          { class: `pill ${r.lag ? "warn" : ""}`, title: `node ${r.node}: applied ${r.applied_index ?? "?"}, lag ${r.lag ?? "?"}` },
                          `${r.node === p.leader ? "★ " : ""}node ${r.node} · ${r.applied_index == null ? "?" : count(r.applied_index)} · ${r.lag ?? "?"}`,
                        ),
                      ),
              },
              { label: "Purged up to", class: "num", cell: (p) => (p.purged_index == null ? "—" : count(p.purged_index)) },
            ],
            view.partitions,
          ),
        ),
      );
    } catch (error) {
      fill(body, errorBox(error));
    }
  };
  await load();
  page.every(5000, load);
}

/**
 * @param {string} value
 * @param {string} label
 * @param {string} [classes]
 */
function tile(value, label, classes = "") {
  return h("div", { class: `tile ${classes}` }, h("div", { class: "n" }, value), h("div", { class: "label" }, label));
}
