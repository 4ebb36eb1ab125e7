// State browser: pick a virtual object or workflow, page through its keys (from the `state`
// table), read an object's entries as JSON or text, and edit them: the whole state is sent back
// with `POST /services/{service}/state`, which replaces it.

import * as api from "./api.js";
import { h, fill, section, errorBox, count, toast, prettyJson, hexToBytes, describe, pageHead } from "./dom.js";

const KEYS_PER_PAGE = 50;

/** @typedef {{name: string, bytes: Uint8Array, text: string | null}} Entry */

/** @param {import("./app.js").Page} page */
export async function render(page) {
  let service = page.params.get("service") ?? "";
  let key = page.params.get("key");
  let keyFilter = page.params.get("filter") ?? "";
  let offset = 0;

  const picker = h("select", { id: "state-service", "aria-label": "Service" }, h("option", { value: "" }, "choose a virtual object or workflow…"));
  const filter = h("input", { id: "state-key-filter", placeholder: "key contains…", value: keyFilter, "data-filter": true, "aria-label": "Filter keys" });
  const keys = h("div", { id: "state-keys" });
  const entries = h("div", { id: "state-entries" });
  fill(
    page.main,
    pageHead("State", "Keyed state of virtual objects and workflows.", picker),
    h(
      "div",
      { class: "split" },
      section("Keys", [h("div", { class: "card-body" }, filter), keys], [], true),
      entries,
    ),
  );

  const save = () => page.setParams({ service, key, filter: keyFilter });

  const loadKeys = async () => {
    if (!service) {
      fill(keys, h("p", { class: "card-body muted" }, "Pick a service."));
      return;
    }
    fill(keys, h("p", { class: "card-body muted" }, "Loading…"));
    try {
      const where = `service_name = ${api.lit(service)}${keyFilter ? ` AND service_key LIKE ${api.contains(keyFilter)}` : ""}`;
      const rows = await api.rows(
        `SELECT service_key, count(*) AS entries, sum(value_length) AS bytes FROM state WHERE ${where} ` +
          `GROUP BY service_key ORDER BY service_key LIMIT ${KEYS_PER_PAGE + 1} OFFSET ${offset}`,
      );
      if (!page.alive()) return;
      const more = rows.length > KEYS_PER_PAGE;
      /** @param {number} to */
      const go = (to) => () => {
        offset = to;
        loadKeys();
      };
      fill(
        keys,
        rows.length === 0
          ? h("p", { class: "card-body muted" }, offset ? "No more keys." : `No state stored for ${service}${keyFilter ? " with such keys" : ""}.`)
          : h(
              "ul",
              { class: "keys" },
              rows.slice(0, KEYS_PER_PAGE).map((row) =>
                h(
                  "li",
                  null,
                  h(
                    "a",
                    {
                      href: `#/state?service=${encodeURIComponent(service)}&key=${encodeURIComponent(row.service_key)}`,
                      class: row.service_key === key ? "current" : "",
                      "data-key": row.service_key,
                      onclick: (/** @type {Event} */ event) => {
                        event.preventDefault();
                        key = row.service_key;
                        save();
                        keys.querySelectorAll("a.current").forEach((a) => a.classList.remove("current"));
                        /** @type {HTMLElement} */ (event.currentTarget).classList.add("current");
                        loadEntries();
                      },
                    },
                    h("span", null, row.service_key),
                    h("span", { class: "muted" }, `${row.entries} · ${count(Number(row.bytes))} B`),
                  ),
                ),
              ),
            ),
        h(
          "div",
          { class: "pager" },
          h("button", { type: "button", disabled: offset === 0, onclick: go(Math.max(0, offset - KEYS_PER_PAGE)) }, "‹ Prev"),
          h("span", { class: "muted" }, `${offset + 1}–${offset + Math.min(rows.length, KEYS_PER_PAGE)}`),
          h("button", { type: "button", disabled: !more, onclick: go(offset + KEYS_PER_PAGE) }, "Next ›"),
        ),
      );
    } catch (error) {
      fill(keys, errorBox(error));
    }
  };

  const loadEntries = async () => {
    if (!service || key === null) {
      fill(entries, section("Entries", h("p", { class: "muted" }, "Pick a key to see its state.")));
      return;
    }
    try {
      const rows = await api.rows(
        `SELECT key, value, value_utf8, value_length FROM state WHERE service_name = ${api.lit(service)} ` +
          `AND service_key = ${api.lit(key)} ORDER BY key`,
      );
      if (!page.alive()) return;
      /** @type {Entry[]} */
      const state = rows.map((row) => ({ name: row.key, bytes: hexToBytes(row.value ?? ""), text: row.value_utf8 }));
      fill(entries, objectView(service, /** @type {string} */ (key), state, loadEntries));
    } catch (error) {
      fill(entries, errorBox(error));
    }
  };

  picker.addEventListener("change", () => {
    service = picker.value;
    key = null;
    offset = 0;
    save();
    loadKeys();
    loadEntries();
  });
  let typingTimer = 0;
  filter.addEventListener("input", () => {
    clearTimeout(typingTimer);
    typingTimer = window.setTimeout(() => {
      keyFilter = filter.value.trim();
      offset = 0;
      save();
      loadKeys();
    }, 250);
  });

  try {
    const keyed = await api.rows(
      "SELECT name, ty FROM sys_service WHERE ty IN ('virtual_object', 'workflow') ORDER BY name",
    );
    const names = keyed.map((row) => row.name);
    if (service && !names.includes(service)) names.unshift(service);
    picker.append(...names.map((name) => h("option", { value: name }, name)));
    picker.value = service;
    if (!service && names.length === 0) {
      fill(keys, h("p", { class: "card-body muted" }, "No virtual objects or workflows are registered."));
    }
  } catch (error) {
    fill(keys, errorBox(error));
  }
  await Promise.all([loadKeys(), loadEntries()]);
}

/**
 * One object's state: each entry with a JSON/text/hex view and an editor; "add entry" for a new
 * name. Saving sends the whole state.
 * @param {string} service
 * @param {string} key
 * @param {Entry[]} state
 * @param {() => void} reload
 */
function objectView(service, key, state, reload) {
  const encoder = new TextEncoder();
  const message = h("div", { id: "state-message" });

  /** @param {Entry[]} next @param {string} what */
  const write = async (next, what) => {
    /** @type {Record<string, number[]>} */
    const newState = {};
    for (const entry of next) newState[entry.name] = Array.from(entry.bytes);
    try {
      await api.request("POST", `/services/${encodeURIComponent(service)}/state`, {
        object_key: key,
        new_state: newState,
        version: null,
      });
      toast(`${what}: saved`);
      fill(message, h("div", { class: "success", id: "state-saved" }, `${what}: saved.`));
      setTimeout(reload, 300);
    } catch (error) {
      const { code, message: text } = describe(error);
      const hint =
        error instanceof api.ApiError && error.status === 409
          ? "The object is locked by a running invocation; try again once it finishes."
          : error instanceof api.ApiError && error.status === 404 && code === "not_found" && text.includes("no admin route")
            ? "This node has no state editing endpoint (POST /services/{service}/state)."
            : "";
      fill(message, errorBox({ code, message: hint ? `${text}\n${hint}` : text }));
    }
  };

  /** @param {Entry} entry */
  const entryView = (entry) => {
    const json = entry.text === null ? null : prettyJson(entry.text);
    const hex = Array.from(entry.bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
    const modes = /** @type {Record<string, string>} */ ({});
    if (json !== null) modes.json = json;
    if (entry.text !== null) modes.text = entry.text;
    modes.hex = hex;
    let mode = Object.keys(modes)[0];
    const pre = h("pre", { class: "value" }, modes[mode]);
    const switcher = h(
      "select",
      { "aria-label": "View as" },
      Object.keys(modes).map((m) => h("option", { value: m }, m === "json" ? "JSON" : m === "text" ? "UTF-8" : "hex")),
    );
    switcher.addEventListener("change", () => {
      mode = switcher.value;
      pre.textContent = modes[mode];
    });
    const box = h("div", { class: "entry", "data-entry": entry.name });
    const edit = () => {
      const editor = h("textarea", { class: "code", spellcheck: "false", "aria-label": `Value of ${entry.name}` });
      editor.value = json ?? entry.text ?? "";
      const asJson = h("input", { type: "checkbox", checked: json !== null || entry.text === null });
      const form = h(
        "form",
        { class: "card-body" },
        editor,
        h(
          "div",
          { class: "row" },
          h("label", { class: "check" }, asJson, "must be valid JSON (values written by the SDK are JSON)"),
          h("span", { class: "spacer" }),
          h("button", { type: "button", onclick: () => box.replaceWith(entryView(entry)) }, "Cancel"),
          h("button", { class: "primary", type: "submit", "data-save": entry.name }, "Save"),
        ),
      );
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        let text = editor.value;
        if (asJson.checked) {
          try {
            text = JSON.stringify(JSON.parse(text));
          } catch (error) {
            fill(message, errorBox({ code: "invalid_json", message: `${entry.name}: ${error instanceof Error ? error.message : error}` }));
            return;
          }
        }
        const next = state.map((e) => (e.name === entry.name ? { ...e, bytes: encoder.encode(text), text } : e));
        write(next, `${key} · ${entry.name}`);
      });
      pre.replaceWith(form);
      editor.focus();
    };
    box.append(
      h(
        "div",
        { class: "head" },
        h("code", null, entry.name),
        h("span", { class: "muted" }, `${count(entry.bytes.length)} bytes`),
        h("span", { class: "spacer" }),
        switcher,
        h("button", { type: "button", onclick: edit, "data-edit": entry.name }, "Edit"),
        h(
          "button",
          {
            type: "button",
            class: "danger",
            onclick: () => write(state.filter((e) => e !== entry), `${key} · ${entry.name} deleted`),
          },
          "Delete",
        ),
      ),
      pre,
    );
    return box;
  };

  const add = () => {
    const name = h("input", { placeholder: "entry name", required: true, "aria-label": "Entry name" });
    const value = h("textarea", { class: "code", placeholder: "JSON value, e.g. \"hello\" or {\"n\": 1}", "aria-label": "Value" });
    const form = h(
      "form",
      { class: "entry card-body" },
      name,
      value,
      h("div", { class: "row" }, h("span", { class: "spacer" }), h("button", { class: "primary", type: "submit" }, "Add")),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const entryName = name.value.trim();
      /** @type {string} */
      let text;
      try {
        text = JSON.stringify(JSON.parse(value.value));
      } catch (error) {
        fill(message, errorBox({ code: "invalid_json", message: error instanceof Error ? error.message : String(error) }));
        return;
      }
      const next = [...state.filter((e) => e.name !== entryName), { name: entryName, bytes: encoder.encode(text), text }];
      write(next, `${key} · ${entryName}`);
    });
    list.append(form);
    name.focus();
  };

  const list = h(
    "div",
    null,
    state.length === 0 ? h("p", { class: "muted" }, "This object has no state.") : state.map(entryView),
  );
  return section(`${service} / ${key}`, [message, list], [
    h("button", { type: "button", onclick: add }, "Add entry"),
    h("button", { type: "button", onclick: reload }, "Reload"),
  ]);
}
