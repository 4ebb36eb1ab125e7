// Small DOM and formatting helpers shared by every page.

/** @typedef {Node | string | number | null | undefined | false} Child */
/** @typedef {Child | Child[] | (Child | Child[])[] | (Child | Child[] | (Child | Child[])[])[]} Nested children, in arrays up to three deep */
/** @typedef {Record<string, string | number | boolean | null | undefined | EventListener>} Attrs */

/**
 * Creates an element: `h("a", {href: "#/"}, "Home")`. Attributes starting with `on` become
 * event listeners; `class`, `for` and the rest become attributes; false/null children are skipped.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Attrs | null} [attrs]
 * @param {...Nested} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attrs, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "value" && "value" in element) {
      /** @type {HTMLInputElement} */ (element).value = String(value);
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

/**
 * @param {Element} parent
 * @param {Nested[]} children
 */
function append(parent, children) {
  for (const child of /** @type {Child[]} */ (children.flat(Infinity))) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(typeof child === "number" ? String(child) : child);
  }
}

/**
 * Replaces the children of `parent`.
 * @param {Element} parent
 * @param {...Nested} children
 */
export function fill(parent, ...children) {
  parent.replaceChildren();
  append(parent, children);
}

/** Every invocation status, in lifecycle order, as `sys_invocation.status` names them. */
export const STATUSES = [
  "scheduled",
  "pending",
  "ready",
  "running",
  "backing-off",
  "suspended",
  "paused",
  "completed",
];

/**
 * A colored badge for an invocation status; a completed one shows its result.
 * @param {string | null | undefined} status
 * @param {string | null} [result] `completion_result`: "success" or "failure"
 */
export function statusBadge(status, result) {
  const name = status ?? "unknown";
  const shown =
    name === "completed" && result ? (result === "success" ? "succeeded" : "failed") : name;
  return h("span", { class: `badge status-${shown}`, "data-status": shown }, shown);
}

/**
 * A timestamp as local time, with the full ISO time as tooltip.
 * @param {string | null | undefined} iso
 */
export function time(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const date = new Date(iso);
  return h("time", { datetime: iso, title: `${iso} (${ago(iso)})` }, formatTime(date));
}

/** @param {Date} date */
export function formatTime(date) {
  const today = new Date().toDateString() === date.toDateString();
  const clock = date.toLocaleTimeString([], { hour12: false });
  const millis = String(date.getMilliseconds()).padStart(3, "0");
  return today ? `${clock}.${millis}` : `${date.toLocaleDateString()} ${clock}`;
}

/**
 * A duration in the largest fitting unit: "850 ms", "12.3 s", "4m 05s", "2h 10m", "3d 4h".
 * @param {number} ms
 */
export function duration(ms) {
  const sign = ms < 0 ? "-" : "";
  ms = Math.abs(ms);
  if (ms < 1000) return `${sign}${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${sign}${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${sign}${m}m ${String(Math.floor(s % 60)).padStart(2, "0")}s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${sign}${hours}h ${String(m % 60).padStart(2, "0")}m`;
  return `${sign}${Math.floor(hours / 24)}d ${hours % 24}h`;
}

/**
 * "3m 10s ago" or "in 5 s".
 * @param {string} iso
 */
export function ago(iso) {
  const delta = Date.now() - new Date(iso).getTime();
  return delta >= 0 ? `${duration(delta)} ago` : `in ${duration(-delta)}`;
}

/** @param {number} n */
export function count(n) {
  return n.toLocaleString("en-US");
}

/**
 * A table of `rows` with the given columns; `cell` renders one value.
 * @template T
 * @param {{label: string, cell: (row: T) => Nested, class?: string}[]} columns
 * @param {T[]} rows
 * @param {string} [empty] shown in place of rows when there are none
 */
export function table(columns, rows, empty = "Nothing here yet.") {
  return h(
    "table",
    { class: "grid" },
    h("thead", null, h("tr", null, columns.map((c) => h("th", { class: c.class }, c.label)))),
    h(
      "tbody",
      null,
      rows.length === 0
        ? h("tr", null, h("td", { class: "empty", colspan: columns.length }, empty))
        : rows.map((row) =>
            h("tr", null, columns.map((c) => h("td", { class: c.class }, c.cell(row)))),
          ),
    ),
  );
}

/**
 * An error box: `{code}` in bold, then the message.
 * @param {unknown} error
 */
export function errorBox(error) {
  const { code, message } = describe(error);
  return h("div", { class: "error", role: "alert" }, h("strong", null, code), " ", message);
}

/**
 * @param {unknown} error
 * @returns {{code: string, message: string}}
 */
export function describe(error) {
  if (error && typeof error === "object" && "code" in error && "message" in error) {
    return { code: String(error.code), message: String(error.message) };
  }
  return { code: "error", message: error instanceof Error ? error.message : String(error) };
}

/** @type {HTMLElement | null} */
let toastBox = null;

/**
 * A short message in the corner; `kind` "ok" or "error".
 * @param {string} text
 * @param {"ok" | "error"} [kind]
 */
export function toast(text, kind = "ok") {
  if (!toastBox) {
    toastBox = h("div", { class: "toasts", "aria-live": "polite" });
    document.body.append(toastBox);
  }
  const note = h("div", { class: `toast toast-${kind}`, role: "status" }, text);
  toastBox.append(note);
  setTimeout(() => note.remove(), kind === "error" ? 8000 : 4000);
}

/**
 * Asks a yes/no question in a modal dialog; resolves true on confirm. Enter confirms, Escape
 * cancels.
 * @param {string} title
 * @param {string} text
 * @param {string} action the confirm button's label
 * @returns {Promise<boolean>}
 */
export function confirmDialog(title, text, action) {
  return new Promise((resolve) => {
    const yes = h("button", { class: "danger", value: "yes", "data-confirm": "yes" }, action);
    const dialog = h(
      "dialog",
      { class: "confirm" },
      h(
        "form",
        { method: "dialog" },
        h("h2", null, title),
        h("p", null, text),
        h(
          "div",
          { class: "buttons" },
          h("button", { value: "no", formnovalidate: true }, "Go back"),
          yes,
        ),
      ),
    );
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "yes");
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
    yes.focus();
  });
}

/**
 * A JSON value pretty-printed if `text` parses as JSON, else null.
 * @param {string} text
 */
export function prettyJson(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return null;
  }
}

/**
 * Bytes from the hex the query API renders binary columns as.
 * @param {string} hex
 */
export function hexToBytes(hex) {
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

/**
 * A page section with a heading and optional tools on the heading's right.
 * @param {string} title
 * @param {Nested} body
 * @param {Nested[]} [tools]
 * @param {boolean} [flush] no padding around the body (for lists and tables)
 */
export function section(title, body, tools = [], flush = false) {
  return h(
    "section",
    { class: "card" },
    h("header", null, h("h2", null, title), h("div", { class: "tools" }, ...tools)),
    h("div", { class: flush ? "card-body flush" : "card-body" }, body),
  );
}

/**
 * A page's title line: heading, a muted line under it, and tools on the right.
 * @param {string} title
 * @param {Nested} [subtitle]
 * @param {...Nested} tools
 */
export function pageHead(title, subtitle, ...tools) {
  return h(
    "div",
    { class: "page-head" },
    h("div", null, h("h1", null, title), h("div", { class: "muted" }, subtitle)),
    h("div", { class: "row" }, ...tools),
  );
}
