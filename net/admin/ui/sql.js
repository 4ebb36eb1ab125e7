// SQL console: a query, Ctrl+Enter to run it, the rows as a table or the error as the node said it.

import * as api from "./api.js";
import { h, fill, section, errorBox, count, pageHead } from "./dom.js";

const LAST_QUERY = "holdfast.sql";
const TABLES = [
  "sys_invocation",
  "sys_journal",
  "state",
  "sys_inbox",
  "sys_keyed_service_status",
  "sys_idempotency",
  "sys_promise",
  "sys_schedule_run",
  "sys_queue",
  "sys_service",
  "sys_deployment",
  "sys_schedule",
  "sys_limit",
  "sys_cluster",
  "sys_status",
];

/** @param {import("./app.js").Page} page */
export async function render(page) {
  const editor = h("textarea", {
    class: "code",
    id: "sql-input",
    spellcheck: "false",
    "data-filter": true,
    "aria-label": "SQL query",
  });
  editor.value =
    page.params.get("q") ??
    sessionStorage.getItem(LAST_QUERY) ??
    "SELECT status, count(*) AS invocations FROM sys_invocation GROUP BY status ORDER BY status";
  const run = h("button", { class: "primary", type: "submit", id: "sql-run", title: "Ctrl+Enter" }, "Run");
  const meta = h("span", { class: "muted", id: "sql-meta" });
  const output = h("div", { id: "sql-output" });
  const form = h(
    "form",
    { class: "sql" },
    editor,
    h("div", { class: "row" }, run, h("span", { class: "muted" }, h("kbd", null, "Ctrl"), "+", h("kbd", null, "Enter")), h("span", { class: "spacer" }), meta),
  );
  fill(
    page.main,
    pageHead("SQL console", "Read-only SQL over the node's tables (POST /query)."),
    section("Query", [
      form,
      h(
        "div",
        { class: "tables-list", style: null },
        h("span", { class: "muted" }, "Tables:"),
        TABLES.map((name) =>
          h(
            "button",
            {
              type: "button",
              onclick: () => {
                editor.value = `SELECT * FROM ${name} LIMIT 20`;
                execute();
              },
            },
            name,
          ),
        ),
      ),
    ]),
    output,
  );

  let generation = 0;
  const execute = async () => {
    const text = editor.value.trim();
    if (!text) return;
    const mine = ++generation;
    sessionStorage.setItem(LAST_QUERY, text);
    page.setParams({ q: text });
    run.disabled = true;
    meta.textContent = "running…";
    const started = performance.now();
    try {
      const { rows, truncated } = await api.query(text);
      if (mine !== generation || !page.alive()) return;
      const took = Math.round(performance.now() - started);
      meta.textContent = `${count(rows.length)} ${rows.length === 1 ? "row" : "rows"} in ${took} ms`;
      fill(
        output,
        truncated ? h("div", { class: "notice" }, "The node cut the result off ([sql] max_rows or max_result_bytes): add a LIMIT or narrow the query.") : null,
        section("Result", h("div", { class: "scroll" }, result(rows)), [], true),
      );
    } catch (error) {
      if (mine !== generation || !page.alive()) return;
      meta.textContent = "failed";
      fill(output, h("div", { id: "sql-error" }, errorBox(error)));
    } finally {
      run.disabled = false;
    }
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    execute();
  });
  editor.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      execute();
    }
  });
  editor.focus();
  if (page.params.get("q")) await execute();
}

/**
 * The rows as a table; columns in the order of the first row.
 * @param {import("./api.js").Row[]} rows
 */
function result(rows) {
  if (rows.length === 0) return h("p", { class: "card-body muted" }, "No rows.");
  const columns = Object.keys(rows[0]);
  return h(
    "table",
    { class: "grid", id: "sql-result" },
    h("thead", null, h("tr", null, columns.map((c) => h("th", null, c)))),
    h(
      "tbody",
      null,
      rows.map((row) =>
        h(
          "tr",
          null,
          columns.map((c) => {
            const value = row[c];
            if (value === null || value === undefined) return h("td", { class: "null" }, "null");
            const text = typeof value === "object" ? JSON.stringify(value) : String(value);
            return h("td", { class: typeof value === "number" ? "num" : "wrap" }, text);
          }),
        ),
      ),
    ),
  );
}
