// Deployments: the registered endpoints and their services, and a form to register one.

import * as api from "./api.js";
import { h, fill, table, section, errorBox, time, toast, pageHead } from "./dom.js";

/** @param {import("./app.js").Page} page */
export async function render(page) {
  const uri = h("input", {
    type: "url",
    id: "deployment-uri",
    name: "uri",
    required: true,
    placeholder: "http://127.0.0.1:9080",
    "data-filter": true,
    "aria-label": "Endpoint URI",
  });
  const force = h("input", { type: "checkbox", id: "deployment-force", name: "force" });
  const outcome = h("div", { id: "deployment-outcome" });
  const list = h("div", { id: "deployment-list" });
  const form = h(
    "form",
    { id: "register-form" },
    h(
      "div",
      { class: "filters" },
      h("label", { class: "field" }, "Endpoint URI", uri),
      h(
        "label",
        { class: "check", title: "Replace services whose handlers or types changed incompatibly" },
        force,
        "force (allow incompatible changes)",
      ),
      h("button", { class: "primary", type: "submit", id: "register" }, "Register"),
    ),
    outcome,
  );
  fill(
    page.main,
    pageHead("Deployments", "Service endpoints the node calls."),
    section("Register a deployment", form),
    list,
  );

  const load = async () => {
    try {
      const deployments = (await api.deployments()).sort((a, b) => b.created_at.localeCompare(a.created_at));
      if (!page.alive()) return;
      fill(
        list,
        section(
          `Registered (${deployments.length})`,
          table(
            [
              { label: "Id", class: "id", cell: (d) => d.id },
              { label: "Endpoint", cell: (d) => h("code", null, d.uri) },
              { label: "Protocol", cell: (d) => `${d.protocol_type} v${d.min_protocol_version}–${d.max_protocol_version}` },
              {
                label: "Services",
                cell: (d) =>
                  d.services.map((s, i) => [
                    i ? ", " : "",
                    h("a", { href: `#/invocations?service=${encodeURIComponent(s.name)}` }, s.name),
                    h("span", { class: "muted" }, ` r${s.revision}`),
                  ]),
              },
              { label: "Registered", cell: (d) => time(d.created_at) },
            ],
            deployments,
            "No deployments yet: register one above.",
          ),
        ),
      );
    } catch (error) {
      fill(list, errorBox(error));
    }
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = /** @type {HTMLButtonElement} */ (form.querySelector("#register"));
    button.disabled = true;
    fill(outcome, h("p", { class: "muted" }, `Discovering ${uri.value}…`));
    try {
      const body = { uri: uri.value.trim(), force: force.checked };
      const answer = await api.request("POST", "/deployments", body);
      const names = (answer?.services ?? []).map((/** @type {{name: string}} */ s) => s.name).join(", ");
      fill(outcome, h("div", { class: "success", id: "deployment-registered" }, `Registered ${answer?.id ?? ""}: ${names || "no services"}.`));
      toast("Deployment registered");
      uri.value = "";
      await load();
    } catch (error) {
      fill(outcome, errorBox(error));
    } finally {
      button.disabled = false;
    }
  });
  await load();
}
