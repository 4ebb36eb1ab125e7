// Invocations: filtered, newest first, one page of rows at a time (LIMIT/OFFSET on the node, so a
// node with 100,000 invocations sends 50 rows), optionally refreshed every 2 s.

import * as api from "./api.js";
import { h, fill, table, section, errorBox, statusBadge, time, count, duration, STATUSES, pageHead } from "./dom.js";

const PAGE_SIZE = 50;

/** The age filter's choices: label and milliseconds. */
const AGES = /** @type {[string, string, number][]} */ ([
  ["", "any age", 0],
  ["5m", "last 5 minutes", 5 * 60_000],
  ["1h", "last hour", 3_600_000],
  ["24h", "last 24 hours", 86_400_000],
  ["7d", "last 7 days", 7 * 86_400_000],
  ["old1h", "older than 1 hour", -3_600_000],
  ["old24h", "older than 24 hours", -86_400_000],
]);

/** Status choices: the table's statuses, with completed split by result. */
const STATUS_CHOICES = [...STATUSES, "succeeded", "failed"];

/**
 * @typedef {{service: string, handler: string, key: string, status: string, age: string}} Filters
 */

/**
 * The WHERE clause for `filters` (values quoted; never interpolated raw).
 * @param {Filters} filters
 */
export function where(filters) {
  /** @type {string[]} */
  const terms = [];
  if (filters.service) terms.push(`target_service_name = ${api.lit(filters.service)}`);
  if (filters.handler) terms.push(`target_handler_name LIKE ${api.contains(filters.handler)}`);
  if (filters.key) terms.push(`target_service_key LIKE ${api.contains(filters.key)}`);
  if (filters.status === "succeeded") terms.push("status = 'completed' AND completion_result = 'success'");
  else if (filters.status === "failed") terms.push("status = 'completed' AND completion_result = 'failure'");
  else if (filters.status) terms.push(`status = ${api.lit(filters.status)}`);
  const age = AGES.find(([value]) => value === filters.age);
  if (age && age[2] > 0) terms.push(`created_at >= now() - INTERVAL '${age[2] / 1000} seconds'`);
  if (age && age[2] < 0) terms.push(`created_at < now() - INTERVAL '${-age[2] / 1000} seconds'`);
  return terms.length ? `WHERE ${terms.join(" AND ")}` : "";
}

/** @param {import("./app.js").Page} page */
export async function render(page) {
  /** @type {Filters} */
  const filters = {
    service: page.params.get("service") ?? "",
    handler: page.params.get("handler") ?? "",
    key: page.params.get("key") ?? "",
    status: page.params.get("status") ?? "",
    age: page.params.get("age") ?? "",
  };
  let offset = Math.max(0, Number(page.params.get("page") ?? 1) - 1) * PAGE_SIZE;
  let live = page.params.get("live") === "1";

  const service = h("select", { name: "service", "aria-label": "Service" }, h("option", { value: "" }, "any service"));
  const handler = h("input", { name: "handler", value: filters.handler, placeholder: "handler contains…", "data-filter": true, "aria-label": "Handler" });
  const key = h("input", { name: "key", value: filters.key, placeholder: "key contains…", "aria-label": "Key" });
  const status = h(
    "select",
    { name: "status", "aria-label": "Status" },
    h("option", { value: "" }, "any status"),
    STATUS_CHOICES.map((s) => h("option", { value: s }, s)),
  );
  status.value = filters.status;
  const age = h("select", { name: "age", "aria-label": "Age" }, AGES.map(([value, label]) => h("option", { value }, label)));
  age.value = filters.age;
  const liveButton = h("button", { type: "button", class: "toggle", id: "live", "aria-pressed": String(live), title: "Refresh every 2 seconds" }, "Live");
  const results = h("div", { id: "invocation-results" });
  const summary = h("span", { class: "muted", id: "invocation-summary" });
  const form = h(
    "form",
    { class: "filters", id: "invocation-filters" },
    h("label", null, "Service", service),
    h("label", null, "Handler", handler),
    h("label", null, "Key", key),
    h("label", null, "Status", status),
    h("label", null, "Created", age),
    h("button", { class: "primary", type: "submit" }, "Filter"),
    h("button", { type: "reset" }, "Clear"),
  );

  fill(
    page.main,
    pageHead("Invocations", summary, liveButton),
    section("Filters", form),
    results,
  );

  // The service list fills in when it arrives; the filter keeps its value meanwhile.
  api
    .services()
    .then((list) => {
      const names = list.map((s) => s.name).sort();
      if (filters.service && !names.includes(filters.service)) names.unshift(filters.service);
      service.append(...names.map((name) => h("option", { value: name }, name)));
      service.value = filters.service;
    })
    .catch(() => {});

  const save = () =>
    page.setParams({ ...filters, page: offset ? offset / PAGE_SIZE + 1 : null, live: live ? 1 : null });

  let generation = 0;
  const load = async () => {
    const mine = ++generation;
    const clause = where(filters);
    try {
      const [list, total] = await Promise.all([
        api.rows(
          `SELECT id, target, target_service_name, target_service_key, target_handler_name, status, ` +
            `completion_result, retry_count, journal_size, created_at, modified_at, completed_at, ` +
            `last_failure FROM sys_invocation ${clause} ORDER BY created_at DESC, id ` +
            `LIMIT ${PAGE_SIZE + 1} OFFSET ${offset}`,
        ),
        api.rows(`SELECT count(*) AS n FROM sys_invocation ${clause}`),
      ]);
      if (mine !== generation || !page.alive()) return;
      const n = Number(total[0]?.n ?? 0);
      const more = list.length > PAGE_SIZE;
      const shown = list.slice(0, PAGE_SIZE);
      summary.textContent = n
        ? `${count(offset + 1)}–${count(offset + shown.length)} of ${count(n)}, newest first`
        : "none match";
      fill(results, section("Results", [resultTable(shown), pager(n, more)]));
    } catch (error) {
      if (mine === generation && page.alive()) fill(results, errorBox(error));
    }
  };

  /** @param {number} total @param {boolean} more */
  const pager = (total, more) => {
    const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
    const current = offset / PAGE_SIZE + 1;
    /** @param {number} to */
    const go = (to) => () => {
      offset = Math.max(0, to) * PAGE_SIZE;
      save();
      load();
    };
    return h(
      "div",
      { class: "pager" },
      h("button", { type: "button", disabled: offset === 0, onclick: go(0) }, "« First"),
      h("button", { type: "button", disabled: offset === 0, onclick: go(current - 2), id: "prev-page" }, "‹ Newer"),
      h("span", null, `page ${count(current)} of ${count(pages)}`),
      h("button", { type: "button", disabled: !more, onclick: go(current), id: "next-page" }, "Older ›"),
    );
  };

  const apply = () => {
    filters.service = service.value;
    filters.handler = handler.value.trim();
    filters.key = key.value.trim();
    filters.status = status.value;
    filters.age = age.value;
    offset = 0;
    save();
    load();
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    apply();
  });
  form.addEventListener("reset", () => setTimeout(apply));
  for (const select of [service, status, age]) select.addEventListener("change", apply);

  /** @type {() => void} */
  let stopLive = () => {};
  const setLive = (/** @type {boolean} */ on) => {
    live = on;
    liveButton.setAttribute("aria-pressed", String(on));
    liveButton.textContent = on ? "Live ●" : "Live";
    stopLive();
    if (on) stopLive = page.every(2000, load);
    save();
  };
  liveButton.addEventListener("click", () => setLive(!live));
  setLive(live);
  await load();
}

/** @param {import("./api.js").Row[]} rows */
function resultTable(rows) {
  const now = Date.now();
  return table(
    [
      {
        label: "Invocation",
        class: "id",
        cell: (r) => h("a", { href: `#/invocation/${r.id}`, class: "invocation-link" }, r.id),
      },
      {
        label: "Target",
        cell: (r) => [
          h("strong", null, r.target_service_name),
          r.target_service_key != null ? h("span", { class: "muted" }, ` / ${r.target_service_key}`) : null,
          ` / ${r.target_handler_name}`,
        ],
      },
      { label: "Status", cell: (r) => statusBadge(r.status, r.completion_result) },
      { label: "Created", cell: (r) => time(r.created_at) },
      {
        label: "Duration",
        class: "num",
        cell: (r) => {
          const start = new Date(r.created_at).getTime();
          const end = r.completed_at ? new Date(r.completed_at).getTime() : now;
          return h("span", { class: r.completed_at ? "" : "muted" }, duration(end - start));
        },
      },
      { label: "Attempts", class: "num", cell: (r) => r.retry_count ?? 0 },
      { label: "Journal", class: "num", cell: (r) => r.journal_size ?? 0 },
      {
        label: "Last failure",
        cell: (r) => (r.last_failure ? h("span", { class: "muted", title: r.last_failure }, short(r.last_failure)) : ""),
      },
    ],
    rows,
    "No invocations match these filters.",
  );
}

/** @param {string} text */
function short(text) {
  return text.length > 60 ? `${text.slice(0, 57)}…` : text;
}
