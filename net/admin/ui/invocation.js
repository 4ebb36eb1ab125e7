// One invocation: its header, its journal as a timeline and a table, its failures, and the
// operator's actions (cancel, kill, pause, resume, purge), each confirmed first.

import * as api from "./api.js";
import {
  h,
  fill,
  table,
  section,
  errorBox,
  statusBadge,
  time,
  duration,
  toast,
  confirmDialog,
  describe,
} from "./dom.js";
import { timeline, legend, summary } from "./timeline.js";

/** What each action does, for its confirmation. */
const ACTIONS = /** @type {Record<string, {label: string, text: string}>} */ ({
  cancel: {
    label: "Cancel",
    text: "The handler is told at its next await and may run its compensations; callers get a 409 cancelled.",
  },
  kill: {
    label: "Kill",
    text: "The invocation ends now without running any more handler code. Use cancel unless it is stuck.",
  },
  pause: { label: "Pause", text: "The invocation stops retrying until it is resumed." },
  resume: { label: "Resume", text: "The invocation runs again from its journal." },
  purge: {
    label: "Purge",
    text: "The completed invocation's journal, status and result are deleted. This cannot be undone.",
  },
});

/**
 * Which actions make sense in a status (the node decides; this only greys out the impossible).
 * @param {string} status
 */
function allowed(status) {
  if (status === "completed") return ["purge"];
  if (status === "paused") return ["resume", "cancel", "kill"];
  return ["cancel", "kill", "pause"];
}

/** @param {import("./app.js").Page} page */
export async function render(page) {
  const id = page.path[0] ?? "";
  if (!api.INVOCATION_ID.test(id)) {
    fill(
      page.main,
      h("h1", null, "Invocation"),
      errorBox({
        code: "invalid_invocation_id",
        message: `"${id}" is not an invocation id: expected inv_1 followed by 33 letters and digits.`,
      }),
      h("a", { href: "#/invocations" }, "← All invocations"),
    );
    return;
  }
  const head = h("div", { id: "invocation-head" });
  const body = h("div", { class: "stack" });
  const live = h("button", { type: "button", class: "toggle", "aria-pressed": "false", id: "live" }, "Live");
  fill(
    page.main,
    h(
      "div",
      { class: "page-head" },
      h("a", { href: "#/invocations" }, "← All invocations"),
      h("div", { class: "row" }, live),
    ),
    head,
    body,
  );

  /** @type {string | null} */
  let shownStatus = null;
  let generation = 0;
  const load = async () => {
    const mine = ++generation;
    try {
      const [invocations, entries, traceUrl] = await Promise.all([
        api.rows(`SELECT * FROM sys_invocation WHERE id = ${api.lit(id)}`),
        api.rows(`SELECT * FROM sys_journal WHERE id = ${api.lit(id)} ORDER BY index`),
        api.traceUrlTemplate(),
      ]);
      if (mine !== generation || !page.alive()) return;
      const invocation = invocations[0];
      if (!invocation) {
        shownStatus = null;
        fill(head, h("h1", { class: "mono" }, id));
        fill(
          body,
          errorBox({
            code: "not_found",
            message: `No invocation ${id} on this node: the id is unknown, or the invocation was purged.`,
          }),
        );
        return;
      }
      shownStatus = invocation.status;
      fill(head, header(invocation, act, traceUrl));
      fill(body, ...details(invocation, entries));
    } catch (error) {
      if (mine === generation && page.alive()) fill(body, errorBox(error));
    }
  };

  /** @param {string} action */
  const act = async (action) => {
    const what = ACTIONS[action];
    const sure = await confirmDialog(`${what.label} this invocation?`, `${id}\n\n${what.text}`, what.label);
    if (!sure) return;
    try {
      await api.request("PATCH", `/invocations/${id}/${action}`);
      toast(`${what.label}: requested`);
    } catch (error) {
      const { code, message } = describe(error);
      toast(`${what.label} refused — ${code}: ${message}`, "error");
      return;
    }
    if (action === "purge") {
      location.hash = "#/invocations";
      return;
    }
    // The request is accepted before the partition applies it, and a cancelled handler may run
    // its compensations first: look again until the status is where the action leads.
    /** @param {string | null} status */
    const settled = (status) =>
      action === "pause" ? status === "paused" : action === "resume" ? status !== "paused" : status === "completed";
    for (let i = 0; i < 60 && page.alive(); i++) {
      await load();
      if (settled(shownStatus)) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  };

  /** @type {() => void} */
  let stop = () => {};
  live.addEventListener("click", () => {
    const on = live.getAttribute("aria-pressed") !== "true";
    live.setAttribute("aria-pressed", String(on));
    live.textContent = on ? "Live ●" : "Live";
    stop();
    if (on) stop = page.every(2000, load);
  });
  await load();
}

/**
 * The trace id, linked to the trace viewer when one is configured.
 * @param {string | null | undefined} traceId
 * @param {string | null} traceUrl
 */
function traceLink(traceId, traceUrl) {
  if (!traceId) return "—";
  const code = h("code", null, traceId);
  if (!traceUrl) return code;
  const href = traceUrl.replaceAll("{trace_id}", encodeURIComponent(traceId));
  return h("a", { id: "trace-link", href, target: "_blank", rel: "noopener noreferrer" }, code);
}

/**
 * @param {import("./api.js").Row} inv
 * @param {(action: string) => void} act
 * @param {string | null} traceUrl
 */
function header(inv, act, traceUrl) {
  const can = allowed(inv.status);
  const end = inv.completed_at ? new Date(inv.completed_at).getTime() : Date.now();
  /** @type {[string, import("./dom.js").Nested][]} */
  const facts = [
    ["Target", h("code", null, inv.target)],
    ["Service type", inv.target_service_ty ?? "—"],
    ["Created", time(inv.created_at)],
    ["Last change", time(inv.modified_at)],
    ["Completed", time(inv.completed_at)],
    ["Duration", `${duration(end - new Date(inv.created_at).getTime())}${inv.completed_at ? "" : " so far"}`],
    ["Attempts", h("span", { id: "attempts" }, inv.retry_count ?? 0)],
    ["Journal entries", inv.journal_size ?? 0],
    ["Deployment", inv.pinned_deployment_id ? h("a", { href: "#/deployments" }, h("code", null, inv.pinned_deployment_id)) : "not pinned yet"],
    ["Trace id", traceLink(inv.trace_id, traceUrl)],
    [
      "Invoked by",
      inv.invoked_by_id
        ? h("a", { href: `#/invocation/${inv.invoked_by_id}` }, `${inv.invoked_by_service_name ?? "service"} (${inv.invoked_by_id.slice(0, 16)}…)`)
        : inv.invoked_by ?? "—",
    ],
  ];
  if (inv.scheduled_start_at) facts.push(["Scheduled start", time(inv.scheduled_start_at)]);
  if (inv.idempotency_key) facts.push(["Idempotency key", h("code", null, inv.idempotency_key)]);
  if (inv.completion_result) {
    facts.push([
      "Result",
      inv.completion_result === "success" ? "success" : h("span", { class: "pill bad" }, inv.completion_failure ?? "failure"),
    ]);
  }
  return section(
    "Invocation",
    [
      h(
        "div",
        { class: "title-line" },
        h("h1", null, inv.id),
        h("span", { id: "invocation-status" }, statusBadge(inv.status, inv.completion_result)),
      ),
      inv.last_failure && inv.status !== "completed"
        ? h("div", { class: "error" }, h("strong", null, `Last failure${inv.last_failure_error_code ? ` (${inv.last_failure_error_code})` : ""}:`), " ", inv.last_failure)
        : null,
      h("dl", { class: "facts" }, facts.map(([label, value]) => h("div", null, h("dt", null, label), h("dd", null, value)))),
    ],
    [
      h(
        "div",
        { class: "actions" },
        Object.entries(ACTIONS).map(([action, what]) =>
          h(
            "button",
            {
              type: "button",
              class: action === "kill" || action === "purge" || action === "cancel" ? "danger" : "",
              "data-action": action,
              disabled: !can.includes(action),
              onclick: () => act(action),
            },
            what.label,
          ),
        ),
      ),
    ],
  );
}

/**
 * How far an entry got: waiting, its result (a failure with its reason), or done.
 * @param {import("./api.js").Row} e
 */
function result(e) {
  if (e.completed === false) return h("span", { class: "pill warn" }, "waiting");
  if (e.completion_result === "failure") {
    return h("span", { class: "pill bad", title: e.completion_failure ?? "" }, `failed ${e.completion_failure ?? ""}`);
  }
  if (e.completion_result === "success") return h("span", { class: "pill ok" }, "success");
  if (e.completed === true) return h("span", { class: "pill" }, "done");
  return h("span", { class: "muted" }, "—");
}

/**
 * The timeline, the journal's rows and the failures.
 * @param {import("./api.js").Row} inv
 * @param {import("./api.js").Row[]} entries
 */
function details(inv, entries) {
  const now = Date.now();
  const timed = entries.some((e) => e.appended_at);
  const known = new Set([
    "partition_key",
    "id",
    "index",
    "entry_type",
    "name",
    "completed",
    "invoked_id",
    "invoked_target",
    "sleep_wakeup_at",
    "promise_name",
    "appended_at",
    "completion_result",
    "completion_failure",
  ]);
  const extra = entries.length ? Object.keys(entries[0]).filter((k) => !known.has(k)) : [];
  return [
    section(
      "Timeline",
      [timeline(inv, entries, now), legend(timed)],
      [h("span", { class: "muted" }, `${entries.length} journal entries`)],
    ),
    section(
      "Journal",
      table(
        [
          { label: "#", class: "num", cell: (e) => e.index },
          { label: "Type", cell: (e) => h("strong", null, e.entry_type) },
          { label: "What", cell: (e) => summary(e, now) },
          {
            label: "Appended",
            // The input entry was written when the invocation was created.
            cell: (e) => time(e.appended_at ?? (e.index === 0 ? inv.created_at : null)),
          },
          { label: "Result", cell: result },
          {
            label: "Callee",
            class: "id",
            cell: (e) => (e.invoked_id ? h("a", { href: `#/invocation/${e.invoked_id}` }, e.invoked_id) : ""),
          },
          { label: "Wakes", cell: (e) => (e.sleep_wakeup_at ? time(e.sleep_wakeup_at) : "") },
          ...extra.map((column) => ({
            label: column,
            /** @param {import("./api.js").Row} e */
            cell: (e) => (e[column] === null ? "" : String(e[column])),
          })),
        ],
        entries,
        inv.status === "completed"
          ? "No journal kept: completed invocations keep theirs only for the service's journal retention."
          : "No journal entries yet.",
      ),
    ),
    section(
      "Failures and retries",
      failures(inv),
    ),
  ];
}

/** @param {import("./api.js").Row} inv */
function failures(inv) {
  const attempts = Number(inv.retry_count ?? 0);
  return [
    h(
      "p",
      null,
      attempts === 0
        ? "Not attempted yet."
        : `${attempts} ${attempts === 1 ? "attempt" : "attempts"} (retry_count: every start counts, resuming after a suspension too; more than one after a failure means it was retried).`,
    ),
    inv.last_failure
      ? h(
          "div",
          { class: "error" },
          h("strong", null, `Last failure${inv.last_failure_error_code ? ` · ${inv.last_failure_error_code}` : ""}`),
          "\n",
          inv.last_failure,
        )
      : h("p", { class: "muted" }, "No failure recorded for the current attempt."),
    inv.completion_failure ? h("div", { class: "error" }, h("strong", null, "Completed with failure"), "\n", inv.completion_failure) : null,
    h(
      "p",
      { class: "muted" },
      "The node keeps the latest failure only; earlier attempts' failures are in the logs and the invocation's trace.",
    ),
  ];
}
