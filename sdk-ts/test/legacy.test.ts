/**
 * The founding post's two examples on the 2023 API aliases: the keyed greeter (run as its own
 * process, exactly as written, on port 8080 — moved to a free port by a preload) and the ticket cart with `ctx.rpc` and `ctx.sendDelayed`.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import http2 from "node:http2";
import * as restate from "@holdfast/sdk/legacy";
import { fileURLToPath } from "node:url";
import { COMPILED_FIXTURES, SOURCE_FIXTURES, exchange, freePort, getJson, input, ok, openHttp2Stream, start, startProcess, view, waitForPort } from "./harness.js";

test("the hello-world keyed router runs as written and counts per key", async () => {
  // The example listens on 8080 as written; a preload moves it to a free port so the test can run
  // beside a kernel whose ingress owns 8080.
  const port = await freePort();
  const remap = ["--import", fileURLToPath(new URL(SOURCE_FIXTURES + "remap-port.mjs", import.meta.url))];
  const env = { REMAP_PORT_FROM: "8080", REMAP_PORT_TO: String(port) };
  const { child } = await startProcess(COMPILED_FIXTURES + "founding-hello.js", env, /listening on 8080/, remap);
  // The example prints its line right after calling listen, before the port is bound.
  await waitForPort(port);
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    const manifest = (await getJson(session, "/discover")).body as { services: unknown[] };
    assert.deepEqual(manifest.services, [
      { name: "greeter", type: "object", handlers: [{ name: "greet", kind: "exclusive", input: "application/json", output: "application/json" }] },
    ]);
    const first = openHttp2Stream(session, "/invoke/greeter/greet", start(1, { key: "Restate" }), input(undefined));
    assert.deepEqual((await first.rest()).map(view), [
      { type: "get_state", key: "count", result: {} },
      { type: "set_state", key: "count", value: 1 },
      { type: "output", result: { value: "Hello Restate for the 1-th time!" } },
      { type: "end" },
    ]);
    const second = openHttp2Stream(session, "/invoke/greeter/greet", start(1, { key: "Restate", state: [["count", ok(1).value as Uint8Array]] }), input(undefined));
    assert.deepEqual(view((await second.rest())[2]!), { type: "output", result: { value: "Hello Restate for the 2-th time!" } });
  } finally {
    // Tear down at once: a graceful close racing the kill would reset the socket mid-close.
    session.destroy();
    child.kill();
  }
});

// The second example, as written in the post, with the declarations it leaves out.
const minutes = (n: number) => n * 60_000;
const ticketServiceRouter = restate.keyedRouter({ reserve: async (_ctx: restate.RpcContext, _ticketId: string) => true });
const ticketApi: restate.ServiceApi<typeof ticketServiceRouter.handlers> = { path: "TicketService" };
const sessionApi: restate.ServiceApi = { path: "UserSession" };

async function addTicketToCart( ctx: restate.RpcContext, userId: string, ticketId: string) {
// try to reserve the ticket
const success = await ctx.rpc(ticketApi).reserve(ticketId);
if (success) {
// update the local state (cart contents)
const tickets = (await ctx.get<string[]>("cart")) ?? [];
tickets.push(ticketId);
ctx.set("cart", tickets);
// schedule expiry timer
ctx.sendDelayed(sessionApi, minutes(15)).expireTicket(userId, ticketId);
}
return success;
}

const checkout = async (ctx: restate.RpcContext, _userId: string) => {
  const idempotencyToken = await ctx.sideEffect(() => crypto.randomUUID());
  return idempotencyToken.length;
};

const server = restate
  .createServer()
  .bindKeyedRouter("UserSession", restate.keyedRouter({ addTicketToCart, checkout, expireTicket: async () => undefined }))
  .bindKeyedRouter("TicketService", ticketServiceRouter)
  .handler();

test("the ticket cart example calls by key, updates state and schedules the delayed expiry", async () => {
  const out = await exchange(server, "/invoke/UserSession/addTicketToCart", start(1, { key: "user-1" }), input("ticket-7"));
  assert.deepEqual(out.map(view), [
    { type: "call", service: "TicketService", handler: "reserve", key: "ticket-7", headers: [], parameter: undefined },
    { type: "suspension", waiting_on: [1] },
  ]);
  const resumed = await exchange(
    server,
    "/invoke/UserSession/addTicketToCart",
    start(2, { key: "user-1" }),
    input("ticket-7"),
    { type: "call", body: { service: "TicketService", handler: "reserve", key: "ticket-7", headers: [], parameter: new Uint8Array(0), result: ok(true) } },
  );
  assert.deepEqual(resumed.map(view), [
    { type: "get_state", key: "cart", result: {} },
    { type: "set_state", key: "cart", value: ["ticket-7"] },
    { type: "send", service: "UserSession", handler: "expireTicket", key: "user-1", headers: [], parameter: "ticket-7", delay_ms: 900_000 },
    { type: "output", result: { value: true } },
    { type: "end" },
  ]);
});

test("ctx.sideEffect journals its result as a run", async () => {
  const out = await exchange(server, "/invoke/UserSession/checkout", start(1, { key: "user-1" }), input(undefined));
  assert.deepEqual(out.map((m) => m.type), ["run", "completion", "suspension"]);
  assert.deepEqual(view(out[0]!), { type: "run", name: "sideEffect" });
  const token = (view(out[1]!) as { result: { value: string } }).result.value;
  const replayed = await exchange(server, "/invoke/UserSession/checkout", start(2, { key: "user-1" }), input(undefined), {
    type: "run",
    body: { name: "sideEffect", result: ok(token) },
  });
  assert.deepEqual(view(replayed[0]!), { type: "output", result: { value: token.length } });
});
