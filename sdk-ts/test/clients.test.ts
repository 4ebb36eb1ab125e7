/** The ingress client against a stand-in ingress that records what it is asked. */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { TerminalError, service, type Context } from "@holdfast/sdk";
import * as clients from "@holdfast/sdk/clients";

const Greeter = service({ name: "Greeter", handlers: { greet: async (_ctx: Context, name: string) => `Hello ${name}` } });

const seen: { method?: string; url?: string; headers: http.IncomingHttpHeaders; body: string }[] = [];
const server = http.createServer((req, res) => {
  let body = "";
  req.on("data", (c: Buffer) => (body += c.toString()));
  req.on("end", () => {
    seen.push({ method: req.method, url: req.url, headers: req.headers, body });
    res.setHeader("content-type", "application/json");
    if (req.url === "/Greeter/fail") {
      res.statusCode = 418;
      res.end(JSON.stringify({ code: 418, message: "failed: x" }));
    } else if (req.url?.includes("/send")) {
      res.statusCode = 202;
      res.end(JSON.stringify({ invocationId: "inv_1", status: "Accepted" }));
    } else if (req.url?.startsWith("/restate/awakeables/")) {
      res.statusCode = 202;
      res.end();
    } else if (req.url?.endsWith("/attach")) {
      res.end(JSON.stringify("attached"));
    } else {
      res.end(JSON.stringify(`Hello ${JSON.parse(body)}`));
    }
  });
});
let ingress: clients.Ingress;

before(async () => {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  ingress = clients.connect({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, headers: { authorization: "Bearer t" } });
});
after(() => server.close());

test("calls a handler with an idempotency key and returns its output", async () => {
  const out = await ingress.serviceClient(Greeter).greet("Ada", clients.rpc.opts({ idempotencyKey: "ik-1" }));
  assert.equal(out, "Hello Ada");
  const req = seen.at(-1)!;
  assert.deepEqual([req.method, req.url, req.body], ["POST", "/Greeter/greet", '"Ada"']);
  assert.equal(req.headers["idempotency-key"], "ik-1");
  assert.equal(req.headers.authorization, "Bearer t");
  assert.equal(req.headers["content-type"], "application/json");
});

test("sends with a delay to a keyed target and attaches to the invocation", async () => {
  const sent = await ingress.objectSendClient(Greeter, "k 1").greet("Ada", clients.rpc.sendOpts({ delay: { minutes: 15 } }));
  assert.deepEqual(sent, { invocationId: "inv_1", status: "Accepted" });
  assert.equal(seen.at(-1)!.url, "/Greeter/k%201/greet/send?delay=900000ms");
  assert.equal(await ingress.attach(sent), "attached");
  assert.equal(seen.at(-1)!.url, "/restate/invocation/inv_1/attach");
});

const AWAKEABLE = "awk_0123456789abcdeffedcba9876543210001122334455667700000001fe07257934eb38a9dca6b3f8c1c0b701";

test("completes awakeables from outside", async () => {
  await ingress.resolveAwakeable(AWAKEABLE, { ok: true });
  assert.deepEqual([seen.at(-1)!.url, seen.at(-1)!.body], [`/restate/awakeables/${AWAKEABLE}/resolve`, '{"ok":true}']);
  await ingress.rejectAwakeable(AWAKEABLE, "nope");
  assert.deepEqual([seen.at(-1)!.url, seen.at(-1)!.body, seen.at(-1)!.headers["content-type"]], [`/restate/awakeables/${AWAKEABLE}/reject`, "nope", "text/plain"]);
});

test("a malformed awakeable id is refused with 400 before any request", async () => {
  const before = seen.length;
  for (const bad of ["awk_x_1", "", AWAKEABLE.slice(0, -1), AWAKEABLE.toUpperCase()]) {
    await assert.rejects(ingress.resolveAwakeable(bad, 1), (e: unknown) => e instanceof TerminalError && e.code === 400 && /malformed awakeable id/.test(e.message));
    await assert.rejects(ingress.rejectAwakeable(bad, "no"), (e: unknown) => e instanceof TerminalError && e.code === 400);
  }
  assert.equal(seen.length, before);
});

test("send delays travel as whole milliseconds in the ingress duration syntax", async () => {
  await ingress.serviceSendClient(Greeter).greet("Ada", clients.rpc.sendOpts({ delay: 500 }));
  assert.equal(seen.at(-1)!.url, "/Greeter/greet/send?delay=500ms");
  await ingress.workflowSendClient(Greeter, "w").greet("Ada", clients.rpc.sendOpts({ delay: { hours: 1, minutes: 30 } }));
  assert.equal(seen.at(-1)!.url, "/Greeter/w/greet/send?delay=5400000ms");
  await ingress.serviceSendClient(Greeter).greet("Ada");
  assert.equal(seen.at(-1)!.url, "/Greeter/greet/send");
  await assert.rejects(ingress.serviceSendClient(Greeter).greet("Ada", clients.rpc.sendOpts({ delay: Number.POSITIVE_INFINITY })), TypeError);
});

test("a failed invocation reaches the caller as a TerminalError with its code", async () => {
  const Failing = service({ name: "Greeter", handlers: { fail: async () => undefined } });
  await assert.rejects(ingress.serviceClient(Failing).fail(), (e: unknown) => e instanceof TerminalError && e.code === 418 && e.message === "failed: x");
});
