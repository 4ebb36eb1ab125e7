// The invocation page's timeline: a wall-clock lane for the invocation's life, and one lane per
// journal entry.
//
// What a bar means:
// - "lifetime" (wall clock): from `created_at` to `completed_at`, or to now while the invocation is
//   not finished (striped). A grey segment first when it was scheduled to start later
//   (`scheduled_start_at`); a dashed purple line where a sleep wakes (`sleep_wakeup_at`); the red
//   line is now.
// - journal entries, on the wall clock when `sys_journal.appended_at` is known: from the entry's
//   append (the input's: the invocation's creation) to its completion where the row has one
//   (`completed_at`), to the wake-up time for a sleep, to now while it still waits (striped: that
//   is what the invocation waits for now), else a point. Journals written before entries had
//   times use the journal's order as their axis: an entry's bar starts at its position, a
//   finished entry (or one that completes nothing: state, sends, output) fills its own step, an
//   open one stretches striped to the end.

import { h, formatTime, duration } from "./dom.js";

/** @typedef {import("./api.js").Row} Row */

/** @param {string} iso */
const ms = (iso) => new Date(iso).getTime();

/** The bar color class of an entry type. */
/** @param {string} type */
export function kind(type) {
  switch (type) {
    case "Run":
      return "run";
    case "Call":
      return "call";
    case "OneWayCall":
      return "send";
    case "Sleep":
      return "sleep";
    case "Awakeable":
    case "CompleteAwakeable":
      return "awakeable";
    case "GetPromise":
    case "PeekPromise":
    case "CompletePromise":
      return "promise";
    case "Input":
    case "Output":
      return "io";
    default:
      return "state";
  }
}

/**
 * What an entry is about, in a few words.
 * @param {Row} entry
 * @param {number} now
 */
export function summary(entry, now) {
  switch (entry.entry_type) {
    case "Call":
      return `call ${entry.invoked_target ?? ""}`;
    case "OneWayCall":
      return `send ${entry.invoked_target ?? ""}`;
    case "Sleep":
      if (!entry.sleep_wakeup_at) return "sleep";
      return `sleep until ${formatTime(new Date(entry.sleep_wakeup_at))}${
        entry.completed ? "" : ` (wakes in ${duration(ms(entry.sleep_wakeup_at) - now)})`
      }`;
    case "Run":
      return `run ${entry.name ?? ""}`;
    case "Awakeable":
      return "awakeable";
    default:
      return entry.name ? `${entry.entry_type} ${entry.name}` : entry.entry_type;
  }
}

/**
 * Whether the entry still waits for a completion (`completed` is true for entries that complete
 * nothing).
 * @param {Row} entry
 */
const open = (entry) => entry.completed === false;

/**
 * @param {Row} invocation the `sys_invocation` row
 * @param {Row[]} entries its `sys_journal` rows, in index order
 * @param {number} [now]
 */
export function timeline(invocation, entries, now = Date.now()) {
  const created = ms(invocation.created_at);
  const finished = invocation.completed_at ? ms(invocation.completed_at) : null;
  const scheduled = invocation.scheduled_start_at ? ms(invocation.scheduled_start_at) : null;
  const timed = entries.some((e) => e.appended_at);
  const wakes = entries
    .filter((e) => e.sleep_wakeup_at && (open(e) || timed))
    .map((e) => ms(e.sleep_wakeup_at));
  const lo = Math.min(created, scheduled ?? created);
  const hi = Math.max(finished ?? now, ...wakes, lo + 1);
  /** @param {number} t */
  const x = (t) => ((Math.min(Math.max(t, lo), hi) - lo) / (hi - lo)) * 100;

  const box = h("div", { class: "timeline", id: "timeline" });
  box.append(h("div", { class: "label muted" }, "wall clock"), wallAxis(lo, hi));

  // The invocation's life.
  const life = h("div", { class: "lane", "data-lane": "lifetime" });
  const status = invocation.status === "completed" && invocation.completion_result === "failure" ? " failed" : "";
  if (scheduled && scheduled > created) {
    life.append(bar(x(created), x(scheduled), "k-state done", "scheduled", "waiting for its scheduled start"));
  }
  const start = scheduled && scheduled > created ? scheduled : created;
  const end = finished ?? now;
  life.append(
    bar(
      x(start),
      x(end),
      `k-invocation${finished ? " done" : " open"}${status}`,
      `${invocation.status} · ${duration(end - created)}`,
      `${new Date(created).toISOString()} → ${finished ? new Date(finished).toISOString() : "now"}`,
    ),
  );
  for (const wake of wakes) life.append(mark(x(wake), "wake", `sleep wakes at ${new Date(wake).toISOString()}`));
  if (!finished) life.append(mark(x(now), "now", "now"));
  box.append(h("div", { class: "label" }, h("strong", null, "lifetime")), life);

  if (entries.length === 0) return box;

  // The journal.
  if (timed) {
    for (const entry of entries) {
      const from = entry.appended_at ? ms(entry.appended_at) : created;
      let to = entry.completed_at ? ms(entry.completed_at) : open(entry) ? now : from;
      if (entry.entry_type === "Sleep" && entry.sleep_wakeup_at) to = ms(entry.sleep_wakeup_at);
      box.append(entryLabel(entry, now), lane(entry, x(from), x(Math.max(to, from)), now));
    }
    return box;
  }
  const steps = entries.length;
  box.append(h("div", { class: "label muted" }, "journal order"), stepAxis(steps, finished ? "end" : "now"));
  for (const entry of entries) {
    const at = (Number(entry.index) / steps) * 100;
    const to = open(entry) ? 100 : ((Number(entry.index) + 1) / steps) * 100;
    box.append(entryLabel(entry, now), lane(entry, at, to, now));
  }
  return box;
}

/**
 * @param {Row} entry
 * @param {number} now
 */
function entryLabel(entry, now) {
  return h(
    "div",
    { class: "label", title: summary(entry, now) },
    h("span", { class: "idx" }, entry.index),
    h("strong", null, entry.entry_type),
    " ",
    h("span", { class: "muted" }, entry.name ?? entry.invoked_target ?? ""),
  );
}

/**
 * @param {Row} entry
 * @param {number} from percent
 * @param {number} to percent
 * @param {number} now
 */
function lane(entry, from, to, now) {
  const waiting = open(entry);
  const text = waiting ? `waiting: ${summary(entry, now)}` : summary(entry, now);
  return h(
    "div",
    { class: "lane", "data-entry": entry.index, "data-type": entry.entry_type },
    bar(from, to, `k-${kind(entry.entry_type)} ${waiting ? "open" : "done"}`, waiting ? text : "", text),
  );
}

/**
 * @param {number} from percent
 * @param {number} to percent
 * @param {string} classes
 * @param {string} text
 * @param {string} title
 */
function bar(from, to, classes, text, title) {
  const element = h("div", { class: `bar ${classes}`, title }, text);
  element.style.left = `${from}%`;
  element.style.width = `max(6px, ${Math.max(0, to - from)}%)`;
  if (from > 70) {
    // Keep the bar's text inside the chart: a late bar grows to the left edge of its end.
    element.style.left = "auto";
    element.style.right = `${100 - Math.max(to, from)}%`;
  }
  return element;
}

/**
 * @param {number} at percent
 * @param {string} classes
 * @param {string} title
 */
function mark(at, classes, title) {
  const element = h("div", { class: `mark ${classes}`, title });
  element.style.left = `${at}%`;
  return element;
}

/**
 * @param {number} lo
 * @param {number} hi
 */
function wallAxis(lo, hi) {
  const axis = h("div", { class: "axis" });
  for (const f of [0, 0.25, 0.5, 0.75, 1]) {
    const t = lo + (hi - lo) * f;
    const text = f === 0 ? formatTime(new Date(t)) : `+${duration(t - lo)}`;
    const tick = h("span", { class: f === 0 ? "start" : f === 1 ? "end" : "" }, text);
    tick.style.left = `${f * 100}%`;
    axis.append(tick);
  }
  return axis;
}

/**
 * @param {number} steps
 * @param {string} last the right edge's label
 */
function stepAxis(steps, last) {
  const axis = h("div", { class: "axis" });
  const every = Math.max(1, Math.ceil(steps / 10));
  for (let i = 0; i < steps; i += every) {
    const tick = h("span", { class: i === 0 ? "start" : "" }, `#${i}`);
    tick.style.left = `${((i + 0.5) / steps) * 100}%`;
    if (i === 0) tick.style.left = "0%";
    axis.append(tick);
  }
  const end = h("span", { class: "end" }, last);
  end.style.left = "100%";
  axis.append(end);
  return axis;
}

/**
 * The legend under the chart.
 * @param {boolean} timed whether the entries have times of their own
 */
export function legend(timed) {
  /** @param {string} k @param {string} text */
  const item = (k, text) => {
    const swatch = h("i", { class: `bar ${k}` });
    return h("span", null, swatch, text);
  };
  return h(
    "div",
    { class: "legend" },
    item("k-invocation", "lifetime"),
    item("k-run", "run"),
    item("k-call", "call"),
    item("k-send", "send"),
    item("k-sleep", "sleep"),
    item("k-awakeable", "awakeable / promise"),
    item("k-state", "state"),
    item("k-io", "input / output"),
    h("span", null, "striped: still waiting (until now)"),
    timed
      ? h("span", null, "Entries run from their append to their completion time.")
      : h(
          "span",
          null,
          "Entries are laid out in journal order: the node records no append or completion times per entry.",
        ),
  );
}
