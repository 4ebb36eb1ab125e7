// The admin API, as the UI calls it: same origin, JSON in and out, `Authorization: Bearer …` when
// the node asks for a token (the token lives in sessionStorage; a 401 asks for it again).

import { h } from "./dom.js";

const TOKEN_KEY = "holdfast.admin-token";

/** An error answer of the admin API (`{code, message}`), or a failure to reach it (status 0). */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   */
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** @type {Promise<string | null> | null} */
let asking = null;

/**
 * Asks for the admin token in a modal dialog (one dialog for all requests waiting on it);
 * resolves with the token, or null when the operator cancels.
 * @param {string} reason
 * @returns {Promise<string | null>}
 */
function askToken(reason) {
  asking ??= new Promise((resolve) => {
    const input = h("input", {
      type: "password",
      name: "token",
      id: "token-input",
      autocomplete: "current-password",
      required: true,
      placeholder: "admin bearer token",
    });
    const dialog = h(
      "dialog",
      { class: "token-dialog" },
      h(
        "form",
        { method: "dialog" },
        h("h2", null, "Admin token"),
        h("p", null, reason),
        h(
          "p",
          { class: "muted" },
          "It is kept in this tab only (sessionStorage) and sent as Authorization: Bearer.",
        ),
        h("label", { for: "token-input" }, "Token"),
        input,
        h(
          "div",
          { class: "buttons" },
          h("button", { value: "cancel", formnovalidate: true }, "Cancel"),
          h("button", { value: "ok", class: "primary", id: "token-save" }, "Use token"),
        ),
      ),
    );
    dialog.addEventListener("close", () => {
      const token = dialog.returnValue === "ok" ? input.value.trim() : "";
      dialog.remove();
      asking = null;
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      resolve(token || null);
    });
    document.body.append(dialog);
    dialog.showModal();
    input.focus();
  });
  return asking;
}

/** Forgets the stored token; the next call that needs one asks again. */
export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/**
 * Calls the admin API and returns the parsed JSON answer (null for an empty body, the text for a
 * non-JSON one). Throws {@link ApiError}: status 0 when the API cannot be reached.
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body] sent as JSON
 * @returns {Promise<any>}
 */
export async function request(method, path, body) {
  const answer = await send(method, path, body);
  const text = await answer.text();
  if (!text) return null;
  return (answer.headers.get("content-type") ?? "").includes("json") ? JSON.parse(text) : text;
}

/**
 * Like {@link request}, but returns the response itself (headers included) once it is a success.
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @returns {Promise<Response>}
 */
export async function send(method, path, body) {
  for (;;) {
    /** @type {Record<string, string>} */
    const headers = { accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.authorization = `Bearer ${token}`;
    /** @type {Response} */
    let answer;
    try {
      answer = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new ApiError(
        0,
        "unreachable",
        `the admin API at ${location.origin} cannot be reached (${
          error instanceof Error ? error.message : error
        }): is the node running?`,
      );
    }
    if (answer.status === 401) {
      const problem = await errorOf(answer);
      forgetToken();
      const next = await askToken(
        token ? "The token was not accepted. Enter another one." : "This node's admin API needs a bearer token.",
      );
      if (next) continue;
      throw problem;
    }
    if (!answer.ok) throw await errorOf(answer);
    return answer;
  }
}

/**
 * The {@link ApiError} an error answer carries.
 * @param {Response} answer
 */
async function errorOf(answer) {
  const text = await answer.text();
  try {
    const body = JSON.parse(text);
    if (body && typeof body.code === "string") {
      return new ApiError(answer.status, body.code, String(body.message ?? ""));
    }
  } catch {
    // Not JSON: fall through and show the text.
  }
  const fallback = answer.status === 502 || answer.status === 504 ? "unreachable" : "http_error";
  return new ApiError(answer.status, fallback, `HTTP ${answer.status}: ${text.slice(0, 300)}`);
}

/** @typedef {Record<string, any>} Row */

/**
 * Runs SQL through `POST /query` and returns the rows and whether the node cut them off.
 * @param {string} query
 * @returns {Promise<{rows: Row[], truncated: boolean}>}
 */
export async function query(query) {
  const answer = await send("POST", "/query", { query });
  const body = await answer.json();
  return { rows: body.rows ?? [], truncated: answer.headers.get("x-holdfast-truncated") === "true" };
}

/**
 * The rows of a query.
 * @param {string} text
 * @returns {Promise<Row[]>}
 */
export async function rows(text) {
  return (await query(text)).rows;
}

/**
 * A SQL string literal: `'it''s'`.
 * @param {string} value
 */
export function lit(value) {
  return `'${value.replaceAll("'", "''")}'`;
}

/**
 * A LIKE pattern matching `value` anywhere, with its wildcards escaped.
 * @param {string} value
 */
export function contains(value) {
  return lit(`%${value.replace(/[\\%_]/g, (c) => `\\${c}`)}%`);
}

/** Invocation ids as the API writes them. */
export const INVOCATION_ID = /^inv_1[0-9A-Za-z]{33}$/;

/**
 * @typedef {{name: string, ty: string, public: boolean}} Handler
 * @typedef {{name: string, ty: string, handlers: Handler[], deployment_id: string, revision: number}} Service
 * @typedef {{name: string, revision: number}} ServiceRevision
 * @typedef {{id: string, uri: string, protocol_type: string, created_at: string,
 *   min_protocol_version: number, max_protocol_version: number, services: ServiceRevision[]}} Deployment
 * @typedef {{id: number, address: string, alive: boolean}} Member
 * @typedef {{node: number, applied_index: number | null, lag: number | null}} Replica
 * @typedef {{partition: number, leader: number | null, term: number | null,
 *   purged_index: number | null, replicas: Replica[]}} PartitionView
 * @typedef {{cluster: string, node: number, nodes: Member[], removed: number[],
 *   partitions: PartitionView[]}} Cluster
 * @typedef {{id: number, status: string, leader: number | null, term: number | null,
 *   applied_index: number | null}} PartitionHealth
 * @typedef {{node_id: number, status: string, metadata: {leader: number | null, term: number,
 *   applied_index: number} | null, partitions: PartitionHealth[]}} Health
 */

/** @returns {Promise<Service[]>} */
export async function services() {
  return (await request("GET", "/services")).services;
}

/** @returns {Promise<Deployment[]>} */
export async function deployments() {
  return (await request("GET", "/deployments")).deployments;
}

/** @returns {Promise<Cluster>} */
export function cluster() {
  return request("GET", "/cluster");
}

/** @returns {Promise<Health>} */
export function health() {
  return request("GET", "/health");
}

/** @type {Promise<string | null> | null} */
let traceUrl = null;

/**
 * Where a trace is viewed (`[tracing] trace_url`, holding `{trace_id}`), or null: asked of
 * `GET /version` once per page load.
 * @returns {Promise<string | null>}
 */
export function traceUrlTemplate() {
  traceUrl ??= request("GET", "/version").then(
    (version) => (typeof version?.trace_url === "string" ? version.trace_url : null),
    () => null,
  );
  return traceUrl;
}
