// Schedules: each schedule's target, when it fires and its next tick (GET /schedules), what its
// partition recorded of its ticks (sys_schedule_run), and pause, resume and delete.

import * as api from "./api.js";
import { h, fill, table, section, errorBox, time, toast, pageHead, confirmDialog, count } from "./dom.js";

/**
 * @typedef {{name: string, service: string, handler: string, key?: string, cron?: string,
 *   timezone?: string, every?: string, catch_up: string, catch_up_max?: number,
 *   overlap: string, paused: boolean, next_fire_at?: string}} Schedule
 * @typedef {{name: string, fired: number, skipped: number, running: number, queued: number,
 *   last_tick_at: string | null}} Run
 */

/** @param {Schedule} s */
function target(s) {
  return s.key == null ? `${s.service}/${s.handler}` : `${s.service}/${s.key}/${s.handler}`;
}

/** @param {Schedule} s */
function when(s) {
  return s.cron != null ? `${s.cron} (${s.timezone ?? "UTC"})` : `every ${s.every}`;
}

/** @param {import("./app.js").Page} page */
export async function render(page) {
  const list = h("div", { id: "schedule-list" });
  fill(
    page.main,
    pageHead("Schedules", "Handlers invoked on a cron expression or an interval; create them with POST /schedules or `holdfast schedules create`."),
    list,
  );

  /**
   * Changes a schedule through the admin API and reloads.
   * @param {string} method
   * @param {string} name
   * @param {unknown} body
   * @param {string} done
   */
  const change = async (method, name, body, done) => {
    try {
      await api.request(method, `/schedules/${encodeURIComponent(name)}`, body);
      toast(done);
      await load();
    } catch (error) {
      toast(error instanceof Error ? error.message : String(error), "error");
    }
  };

  const load = async () => {
    try {
      /** @type {Schedule[]} */
      const schedules = (await api.request("GET", "/schedules")).schedules;
      /** @type {Map<string, Run>} */
      const runs = new Map();
      for (const run of /** @type {Run[]} */ (
        await api.rows("SELECT name, fired, skipped, running, queued, last_tick_at FROM sys_schedule_run")
      )) {
        runs.set(run.name, run);
      }
      if (!page.alive()) return;
      fill(
        list,
        section(
          `Schedules (${schedules.length})`,
          table(
            [
              { label: "Name", cell: (/** @type {Schedule} */ s) => h("strong", null, s.name) },
              { label: "Target", cell: (/** @type {Schedule} */ s) => h("code", null, target(s)) },
              { label: "When", cell: (/** @type {Schedule} */ s) => when(s) },
              {
                label: "Next tick",
                cell: (/** @type {Schedule} */ s) =>
                  s.paused ? h("span", { class: "pill warn" }, "paused") : s.next_fire_at ? time(s.next_fire_at) : "—",
              },
              {
                label: "Last tick",
                cell: (/** @type {Schedule} */ s) => {
                  const last = runs.get(s.name)?.last_tick_at;
                  return last ? time(last) : "—";
                },
              },
              {
                label: "Fired · skipped",
                class: "num",
                cell: (/** @type {Schedule} */ s) => {
                  const run = runs.get(s.name);
                  return run ? `${count(run.fired)} · ${count(run.skipped)}` : "0 · 0";
                },
              },
              { label: "Policies", cell: (/** @type {Schedule} */ s) => `catch up ${s.catch_up}, overlap ${s.overlap}` },
              {
                label: "",
                cell: (/** @type {Schedule} */ s) =>
                  h(
                    "span",
                    { class: "buttons" },
                    h(
                      "button",
                      {
                        "data-action": s.paused ? "resume" : "pause",
                        "data-schedule": s.name,
                        onclick: () =>
                          change("PATCH", s.name, { paused: !s.paused }, s.paused ? `Resumed ${s.name}` : `Paused ${s.name}`),
                      },
                      s.paused ? "Resume" : "Pause",
                    ),
                    h(
                      "button",
                      {
                        class: "danger",
                        "data-action": "delete",
                        "data-schedule": s.name,
                        onclick: async () => {
                          if (await confirmDialog(`Delete ${s.name}?`, "It fires no more ticks; ticks it queued still run.", "Delete")) {
                            await change("DELETE", s.name, undefined, `Deleted ${s.name}`);
                          }
                        },
                      },
                      "Delete",
                    ),
                  ),
              },
            ],
            schedules,
            "No schedules yet.",
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
