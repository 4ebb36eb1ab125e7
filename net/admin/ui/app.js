// The shell: navigation, hash routing (`#/invocations?status=suspended`), keyboard shortcuts and
// the node's health in the header. Each page module exports `render(page)`.

import * as api from "./api.js";
import { h, fill, errorBox, toast } from "./dom.js";
import * as overview from "./overview.js";
import * as invocations from "./invocations.js";
import * as invocation from "./invocation.js";
import * as state from "./state.js";
import * as deployments from "./deployments.js";
import * as sql from "./sql.js";
import * as cluster from "./cluster.js";
import * as schedules from "./schedules.js";
import * as limits from "./limits.js";

/**
 * What a page gets: where to draw, the route, and timers that stop when the page is left.
 * @typedef {object} Page
 * @property {HTMLElement} main the element the page fills
 * @property {string[]} path the route after the page name (`#/invocation/{id}` → `[id]`)
 * @property {URLSearchParams} params the route's query
 * @property {() => boolean} alive false once the operator navigated away
 * @property {(ms: number, tick: () => Promise<void> | void) => () => void} every repeats `tick`
 *   while the page is shown (never overlapping itself); returns a stop function
 * @property {(params: Record<string, string | number | null | undefined>) => void} setParams
 *   rewrites the route's query without drawing the page again
 */

/** @type {Record<string, {title: string, key: string, render: (page: Page) => Promise<void> | void}>} */
const PAGES = {
  overview: { title: "Overview", key: "o", render: overview.render },
  invocations: { title: "Invocations", key: "i", render: invocations.render },
  invocation: { title: "Invocation", key: "", render: invocation.render },
  state: { title: "State", key: "s", render: state.render },
  deployments: { title: "Deployments", key: "d", render: deployments.render },
  schedules: { title: "Schedules", key: "t", render: schedules.render },
  limits: { title: "Limits", key: "l", render: limits.render },
  sql: { title: "SQL", key: "q", render: sql.render },
  cluster: { title: "Cluster", key: "c", render: cluster.render },
};

const main = /** @type {HTMLElement} */ (document.getElementById("main"));
const nav = /** @type {HTMLElement} */ (document.getElementById("nav"));
const healthDot = /** @type {HTMLElement} */ (document.getElementById("health"));

/** Stops the shown page's timers. */
let leave = () => {};

/** Parses `location.hash` into a page name, the rest of its path, and its query. */
function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = hash.split("?", 2);
  const [name = "", ...rest] = path.split("/").map(decodeURIComponent);
  return { name: name || "overview", rest, params: new URLSearchParams(query) };
}

async function show() {
  leave();
  const { name, rest, params } = route();
  const entry = PAGES[name];
  let alive = true;
  /** @type {(() => void)[]} */
  const stops = [];
  leave = () => {
    alive = false;
    stops.forEach((stop) => stop());
  };
  for (const link of nav.querySelectorAll("a")) {
    const current = link.dataset.page === name || (name === "invocation" && link.dataset.page === "invocations");
    link.classList.toggle("current", current);
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${entry?.title ?? "Not found"} · Holdfast`;
  fill(main);
  main.dataset.page = name;
  if (!entry) {
    fill(main, errorBox({ code: "not_found", message: `no page #/${name}` }));
    return;
  }
  /** @type {Page} */
  const page = {
    main,
    path: rest,
    params,
    alive: () => alive,
    every(ms, tick) {
      let timer = 0;
      let stopped = false;
      const loop = async () => {
        if (stopped || !alive) return;
        try {
          await tick();
        } finally {
          if (!stopped && alive) timer = window.setTimeout(loop, ms);
        }
      };
      timer = window.setTimeout(loop, ms);
      const stop = () => {
        stopped = true;
        clearTimeout(timer);
      };
      stops.push(stop);
      return stop;
    },
    setParams(next) {
      const query = new URLSearchParams();
      for (const [key, value] of Object.entries(next)) {
        if (value !== null && value !== undefined && value !== "") query.set(key, String(value));
      }
      const text = query.toString();
      const path = [name, ...rest.map(encodeURIComponent)].join("/");
      history.replaceState(null, "", `#/${path}${text ? `?${text}` : ""}`);
    },
  };
  try {
    await entry.render(page);
  } catch (error) {
    if (alive) main.append(errorBox(error));
  }
}

function buildNav() {
  for (const [name, entry] of Object.entries(PAGES)) {
    if (!entry.key) continue;
    nav.append(
      h(
        "a",
        { href: `#/${name}`, "data-page": name, title: `${entry.title} (g ${entry.key})` },
        entry.title,
      ),
    );
  }
}

/** Polls `/health` (open without a token) for the header's dot. */
async function pollHealth() {
  try {
    const health = await api.health();
    const ok = health.status === "ok";
    healthDot.className = `health ${ok ? "ok" : "degraded"}`;
    healthDot.textContent = ok ? `node ${health.node_id} healthy` : `node ${health.node_id} degraded`;
  } catch (error) {
    healthDot.className = "health down";
    healthDot.textContent = "admin API unreachable";
  }
  setTimeout(pollHealth, 10_000);
}

/** @param {EventTarget | null} target */
function typing(target) {
  return (
    target instanceof HTMLInputElement ||
    target instanceof HTMLTextAreaElement ||
    target instanceof HTMLSelectElement ||
    (target instanceof HTMLElement && target.isContentEditable)
  );
}

let pendingG = 0;

/** @param {KeyboardEvent} event */
function onKey(event) {
  if (event.key === "Escape" && typing(event.target)) {
    /** @type {HTMLElement} */ (event.target).blur();
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
  if (document.querySelector("dialog[open]")) return;
  if (pendingG && Date.now() - pendingG < 1500) {
    pendingG = 0;
    const target = Object.entries(PAGES).find(([, p]) => p.key && p.key === event.key);
    if (target) {
      event.preventDefault();
      location.hash = `#/${target[0]}`;
    }
    return;
  }
  pendingG = 0;
  if (event.key === "g") {
    pendingG = Date.now();
  } else if (event.key === "/") {
    const filter = main.querySelector("[data-filter]") ?? main.querySelector("input, textarea");
    if (filter instanceof HTMLElement) {
      event.preventDefault();
      filter.focus();
    }
  } else if (event.key === "r") {
    show();
  } else if (event.key === "?") {
    help();
  }
}

function help() {
  const rows = [
    ["/", "focus the page's filter box"],
    ["g o", "overview"],
    ["g i", "invocations"],
    ["g s", "state"],
    ["g d", "deployments"],
    ["g t", "schedules"],
    ["g l", "limits"],
    ["g q", "SQL console"],
    ["g c", "cluster"],
    ["r", "reload the page's data"],
    ["Ctrl+Enter", "run the SQL query"],
    ["Esc", "leave a text box; close a dialog"],
    ["?", "this help"],
  ];
  const dialog = h(
    "dialog",
    { class: "help" },
    h(
      "form",
      { method: "dialog" },
      h("h2", null, "Keyboard shortcuts"),
      h("dl", null, rows.map(([key, what]) => [h("dt", null, h("kbd", null, key)), h("dd", null, what)])),
      h("div", { class: "buttons" }, h("button", { class: "primary" }, "Close")),
    ),
  );
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
}

/** The header's "go to invocation" box. */
function jump() {
  const input = /** @type {HTMLInputElement} */ (document.getElementById("jump"));
  input.form?.addEventListener("submit", (event) => {
    event.preventDefault();
    const id = input.value.trim();
    if (!api.INVOCATION_ID.test(id)) {
      toast(`"${id}" is not an invocation id (inv_1 and 33 letters and digits)`, "error");
      return;
    }
    input.value = "";
    input.blur();
    location.hash = `#/invocation/${id}`;
  });
}

buildNav();
jump();
document.getElementById("help")?.addEventListener("click", help);
window.addEventListener("hashchange", show);
document.addEventListener("keydown", onKey);
pollHealth();
show();
