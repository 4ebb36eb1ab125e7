// Limits: flow-control limits (GET /limits) with what each one's home partition has running and
// waiting (sys_queue), a form to create one, and per row a change of its budget and delete.

import * as api from "./api.js";
import { h, fill, table, section, errorBox, toast, pageHead, confirmDialog, count, duration, formatTime } from "./dom.js";

/**
 * @typedef {{name: string, service: string, handler?: string, key_prefix?: string,
 *   max_concurrency?: number, rate?: string, burst?: number}} Limit
 * @typedef {{name: string, running: number, queued: number, oldest_queued_at: string | null,
 *   oldest_wait_ms: number | null, granted: number}} Queue
 */

/**
 * `sys_queue` per limit, summed over partitions; the wait is measured by the node's clock, which
 * stamped the queue.
 */
const QUEUE_SQL = `SELECT name, SUM(running) AS running, SUM(queued) AS queued,
  MIN(oldest_queued_at) AS oldest_queued_at,
  CAST(date_part('epoch', now()) * 1000 AS BIGINT)
    - CAST(date_part('epoch', MIN(oldest_queued_at)) * 1000 AS BIGINT) AS oldest_wait_ms,
  SUM(granted) AS granted
FROM sys_queue GROUP BY name`;

/** @param {Limit} l what the limit covers: `Service/handler`, and the key prefix if any */
function covers(l) {
  const target = l.handler == null ? `${l.service}/*` : `${l.service}/${l.handler}`;
  return [h("code", null, target), l.key_prefix == null ? null : [" ", h("span", { class: "pill" }, `key ${l.key_prefix}…`)]];
}

/** @param {Limit} l the rate and its burst, or a dash */
function rate(l) {
  if (l.rate == null) return h("span", { class: "muted" }, "—");
  return [l.rate, h("span", { class: "muted" }, ` · burst ${l.burst ?? 1}`)];
}

/**
 * A whole number from a form field, or null when the field is empty.
 * @param {HTMLInputElement} input
 */
function whole(input) {
  const text = input.value.trim();
  return text === "" ? null : Number(text);
}

/**
 * A text from a form field, or null when the field is empty.
 * @param {HTMLInputElement} input
 */
function text(input) {
  const value = input.value.trim();
  return value === "" ? null : value;
}

/** @param {string} name @param {string} placeholder @param {string} label */
function numberInput(name, placeholder, label) {
  return h("input", { type: "number", min: 1, step: 1, name, placeholder, "aria-label": label });
}

/** @param {import("./app.js").Page} page */
export async function render(page) {
  const fields = {
    name: h("input", { name: "name", id: "limit-name", required: true, placeholder: "tenant-api", "data-filter": true, "aria-label": "Name" }),
    service: h("input", { name: "service", required: true, placeholder: "Service", list: "limit-services", "aria-label": "Service" }),
    handler: h("input", { name: "handler", placeholder: "every handler", "aria-label": "Handler" }),
    key_prefix: h("input", { name: "key_prefix", placeholder: "every key", "aria-label": "Key prefix" }),
    max_concurrency: numberInput("max_concurrency", "no cap", "Max concurrency"),
    rate: h("input", { name: "rate", placeholder: "50/s, 10/m, 3/2s", "aria-label": "Rate" }),
    burst: numberInput("burst", "1", "Burst"),
  };
  const services = h("datalist", { id: "limit-services" });
  const outcome = h("div", { id: "limit-outcome" });
  const create = h("button", { class: "primary", type: "submit", id: "limit-create" }, "Create");
  const form = h(
    "form",
    { id: "limit-form" },
    h(
      "div",
      { class: "filters" },
      h("label", { class: "field" }, "Name", fields.name),
      h("label", { class: "field" }, "Service", fields.service, services),
      h("label", { class: "field" }, "Handler", fields.handler),
      h("label", { class: "field" }, "Key prefix", fields.key_prefix),
      h("label", { class: "field" }, "Max concurrency", fields.max_concurrency),
      h("label", { class: "field" }, "Rate", fields.rate),
      h("label", { class: "field" }, "Burst", fields.burst),
      create,
    ),
    outcome,
  );
  const list = h("div", { id: "limit-list" });
  fill(
    page.main,
    pageHead(
      "Limits",
      "At most so many attempts at once, or so many starts per period, for a service, a handler or a key prefix; invocations over the budget wait in arrival order.",
    ),
    section("Create a limit", form),
    list,
  );
  api.services().then(
    (all) => fill(services, all.map((s) => h("option", { value: s.name }))),
    () => {},
  );

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    /** @type {Record<string, string | number>} */
    const body = { name: fields.name.value.trim(), service: fields.service.value.trim() };
    for (const key of /** @type {const} */ (["handler", "key_prefix", "rate"])) {
      const value = text(fields[key]);
      if (value !== null) body[key] = value;
    }
    for (const key of /** @type {const} */ (["max_concurrency", "burst"])) {
      const value = whole(fields[key]);
      if (value !== null) body[key] = value;
    }
    create.disabled = true;
    try {
      /** @type {Limit} */
      const limit = await api.request("POST", "/limits", body);
      fill(outcome, h("div", { class: "success", id: "limit-created" }, `Created ${limit.name}: partitions apply it within about a second.`));
      toast(`Created ${limit.name}`);
      form.reset();
      await load();
    } catch (error) {
      fill(outcome, errorBox(error));
    } finally {
      create.disabled = false;
    }
  });

  /**
   * Deletes a limit once confirmed, and reloads.
   * @param {Limit} l
   */
  const remove = async (l) => {
    if (!(await confirmDialog(`Delete ${l.name}?`, "Invocations waiting for its permits start at once.", "Delete"))) return;
    try {
      await api.request("DELETE", `/limits/${encodeURIComponent(l.name)}`);
      toast(`Deleted ${l.name}`);
      await load();
    } catch (error) {
      toast(error instanceof Error ? error.message : String(error), "error");
    }
  };

  const load = async () => {
    try {
      /** @type {Limit[]} */
      const limits = (await api.request("GET", "/limits")).limits;
      /** @type {Map<string, Queue> | null} */
      let queues = new Map();
      /** @type {unknown} */
      let queueError = null;
      if (limits.length > 0) {
        try {
          for (const q of /** @type {Queue[]} */ (await api.rows(QUEUE_SQL))) queues.set(q.name, q);
        } catch (error) {
          queues = null;
          queueError = error;
        }
      }
      if (!page.alive()) return;
      /** @param {Limit} l @returns {Queue} */
      const queue = (l) =>
        queues?.get(l.name) ?? { name: l.name, running: 0, queued: 0, oldest_queued_at: null, oldest_wait_ms: null, granted: 0 };
      /**
       * A queue figure, or a dash when sys_queue could not be read.
       * @param {string} field
       * @param {(q: Queue) => import("./dom.js").Nested} show
       */
      const figure = (field, show) => (/** @type {Limit} */ l) =>
        h("span", { "data-field": field }, queues ? show(queue(l)) : "—");
      fill(
        list,
        queueError ? h("div", { class: "notice" }, `Queue figures unavailable (sys_queue): ${queueError instanceof Error ? queueError.message : String(queueError)}`) : null,
        section(
          `Limits (${limits.length})`,
          table(
            [
              { label: "Name", cell: (/** @type {Limit} */ l) => h("strong", null, l.name) },
              { label: "Covers", cell: covers },
              {
                label: "Max concurrency",
                class: "num",
                cell: (/** @type {Limit} */ l) =>
                  h("span", { "data-field": "max" }, l.max_concurrency == null ? "—" : count(l.max_concurrency)),
              },
              { label: "Rate", cell: (/** @type {Limit} */ l) => h("span", { "data-field": "rate" }, rate(l)) },
              {
                label: "Running",
                class: "num",
                cell: figure("running", (q) => count(Number(q.running))),
              },
              {
                label: "Queued",
                class: "num",
                cell: figure("queued", (q) =>
                  Number(q.queued) > 0 ? h("span", { class: "pill warn" }, count(Number(q.queued))) : "0",
                ),
              },
              {
                label: "Oldest wait",
                class: "num",
                cell: figure("wait", (q) =>
                  Number(q.queued) > 0 && q.oldest_wait_ms != null
                    ? h(
                        "span",
                        { title: q.oldest_queued_at ? `waiting since ${formatTime(new Date(q.oldest_queued_at))}` : null },
                        duration(Math.max(0, Number(q.oldest_wait_ms))),
                      )
                    : h("span", { class: "muted" }, "—"),
                ),
              },
              { label: "Granted", class: "num", cell: figure("granted", (q) => count(Number(q.granted))) },
              {
                label: "",
                cell: (/** @type {Limit} */ l) =>
                  h(
                    "span",
                    { class: "buttons" },
                    h(
                      "button",
                      { type: "button", "data-action": "edit", "data-limit": l.name, onclick: () => edit(l, load) },
                      "Edit",
                    ),
                    " ",
                    h(
                      "button",
                      { type: "button", class: "danger", "data-action": "delete", "data-limit": l.name, onclick: () => remove(l) },
                      "Delete",
                    ),
                  ),
              },
            ],
            limits,
            "No limits yet: create one above, with `holdfast limits create` or [[limits]] in the configuration.",
          ),
        ),
      );
    } catch (error) {
      fill(list, errorBox(error));
    }
  };
  await load();
  page.every(2000, load);
}

/**
 * Changes a limit's budget in a dialog: max concurrency, rate and burst; an emptied field clears
 * it. The API's answer to a refused change shows in the dialog, which stays open.
 * @param {Limit} l
 * @param {() => Promise<void>} reload
 */
function edit(l, reload) {
  const max = h("input", { type: "number", min: 1, step: 1, id: "limit-edit-max", value: l.max_concurrency ?? "", placeholder: "no cap" });
  const rateInput = h("input", { id: "limit-edit-rate", value: l.rate ?? "", placeholder: "no rate (50/s, 10/m, 3/2s)" });
  const burst = h("input", { type: "number", min: 1, step: 1, id: "limit-edit-burst", value: l.burst ?? "", placeholder: "1" });
  const problem = h("div", { id: "limit-edit-error" });
  const save = h("button", { class: "primary", type: "submit", id: "limit-edit-save" }, "Save");
  const form = h(
    "form",
    null,
    h("h2", null, `Change ${l.name}`),
    h("p", { class: "muted" }, "Empty a field to clear it; a limit keeps at least a cap or a rate."),
    h("label", { for: "limit-edit-max" }, "Max concurrency"),
    max,
    h("label", { for: "limit-edit-rate" }, "Rate"),
    rateInput,
    h("label", { for: "limit-edit-burst" }, "Burst"),
    burst,
    problem,
    h(
      "div",
      { class: "buttons" },
      h("button", { type: "button", onclick: () => dialog.close() }, "Cancel"),
      save,
    ),
  );
  const dialog = h("dialog", { class: "limit-edit" }, form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    /** @type {Record<string, string | number | null>} */
    const patch = {};
    const nextMax = whole(max);
    if (nextMax !== (l.max_concurrency ?? null)) patch.max_concurrency = nextMax;
    const nextRate = text(rateInput);
    if (nextRate !== (l.rate ?? null)) patch.rate = nextRate;
    const nextBurst = whole(burst);
    if (nextBurst !== null && nextBurst !== (l.burst ?? null)) patch.burst = nextBurst;
    if (Object.keys(patch).length === 0) {
      dialog.close();
      return;
    }
    save.disabled = true;
    try {
      await api.request("PATCH", `/limits/${encodeURIComponent(l.name)}`, patch);
      toast(`Changed ${l.name}`);
      dialog.close();
      await reload();
    } catch (error) {
      fill(problem, errorBox(error));
    } finally {
      save.disabled = false;
    }
  });
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  max.focus();
}
