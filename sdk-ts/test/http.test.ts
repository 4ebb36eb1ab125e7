/**
 * Real endpoint processes over real connections: the Restate anchor services (changed only in their
 * import) behind Node's own `http2` server, and an `endpoint().listen()` process speaking HTTP/2
 * (streaming and request/response) and HTTP/1.1 (request/response) on one port.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http2 from "node:http2";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { ChildProcess } from "node:child_process";
import { FLAG_ACK, MANIFEST_CONTENT_TYPE, awakeableId } from "@holdfast/sdk/protocol";
import {
  INVOCATION_ID,
  AWAKEABLE_KEY,
  ack,
  completion,
  exchangeHttp,
  failed,
  freePort,
  getJson,
  input,
  ok,
  openHttp2Stream,
  SOURCE_FIXTURES,
  start,
  startProcess,
  view,
} from "./harness.js";

const manifestVector = JSON.parse(readFileSync(fileURLToPath(new URL("../../../tests/protocol-vectors/manifest.json", import.meta.url)), "utf8"));

describe("the Restate anchor services over HTTP/2", () => {
  let child: ChildProcess;
  let session: http2.ClientHttp2Session;

  before(async () => {
    const port = await freePort();
    ({ child } = await startProcess(SOURCE_FIXTURES + "anchor-services.mjs", { PORT: String(port) }, /services listening on 127\.0\.0\.1/));
    session = http2.connect(`http://127.0.0.1:${port}`);
  });

  after(() => {
    // Tear down at once: a graceful close racing the kill would reset the socket mid-close.
    session.destroy();
    child.kill();
  });

  test("discovery announces every service with its handlers", async () => {
    const { status, contentType, body } = await getJson(session, "/discover");
    assert.equal(status, 200);
    assert.equal(contentType, MANIFEST_CONTENT_TYPE);
    assert.deepEqual(body, manifestVector);
  });

  test("Greeter.greet answers from its input", async () => {
    const s = openHttp2Stream(session, "/invoke/Greeter/greet", start(1), input("Alice"));
    assert.deepEqual((await s.rest()).map(view), [{ type: "output", result: { value: "Hello Alice" } }, { type: "end" }]);
  });

  test("Counter.add reads the eager state and writes it back; Counter.get is shared", async () => {
    const add = openHttp2Stream(session, "/invoke/Counter/add", start(1, { key: "k1", state: [["count", ok(5).value as Uint8Array]] }), input(2));
    assert.deepEqual((await add.rest()).map(view), [
      { type: "get_state", key: "count", result: { value: 5 } },
      { type: "set_state", key: "count", value: 7 },
      { type: "output", result: { value: 7 } },
      { type: "end" },
    ]);
    const lazy = openHttp2Stream(session, "/invoke/Counter/get", start(1, { key: "k1", state_complete: false }), input(undefined));
    assert.deepEqual(view(await lazy.next()), { type: "get_state", key: "count" });
    lazy.send(completion(1, ok(7)));
    assert.deepEqual(view(await lazy.next()), { type: "output", result: { value: 7 } });
    lazy.closeInput();
  });

  test("Steps.run3 journals three runs, each released by its ack", async () => {
    const s = openHttp2Stream(session, "/invoke/Steps/run3", start(1), input({}));
    for (const i of [1, 2, 3]) {
      assert.deepEqual(view(await s.next()), { type: "run", name: `step${i}` });
      assert.deepEqual(view(await s.next()), { type: "completion", flags: FLAG_ACK, entry: i, result: { value: i } });
      s.send(ack(i));
    }
    assert.deepEqual(view(await s.next()), { type: "output", result: { value: 6 } });
    s.closeInput();
  });

  test("Chain.call calls Greeter and returns its completion", async () => {
    const s = openHttp2Stream(session, "/invoke/Chain/call", start(1), input("Bob"));
    assert.deepEqual(view(await s.next()), { type: "call", service: "Greeter", handler: "greet", headers: [], parameter: "Bob" });
    s.send(completion(1, ok("Hello Bob")));
    assert.deepEqual(view(await s.next()), { type: "output", result: { value: "Hello Bob" } });
    s.closeInput();
  });

  test("Sleeper.nap sleeps durably", async () => {
    const s = openHttp2Stream(session, "/invoke/Sleeper/nap", start(1), input(300));
    assert.deepEqual(view(await s.next()), { type: "sleep", duration_ms: 300 });
    s.send(completion(1, {}));
    assert.deepEqual(view(await s.next()), { type: "output", result: { value: "slept 300" } });
    s.closeInput();
  });

  test("Signup runs as a workflow: run waits on its promise, confirm resolves it, status reads state", async () => {
    const run = openHttp2Stream(session, "/invoke/Signup/run", start(1, { key: "w1" }), input("a@b.c"));
    assert.deepEqual(view(await run.next()), { type: "set_state", key: "status", value: "waiting" });
    assert.deepEqual(view(await run.next()), { type: "get_promise", name: "confirmed" });
    run.send(completion(2, ok("yes")));
    assert.deepEqual(view(await run.next()), { type: "set_state", key: "status", value: "confirmed" });
    assert.deepEqual(view(await run.next()), { type: "output", result: { value: "signed up a@b.c (confirmed: yes)" } });
    run.closeInput();

    const confirm = openHttp2Stream(session, "/invoke/Signup/confirm", start(1, { key: "w1" }), input("yes"));
    assert.deepEqual(view(await confirm.next()), { type: "complete_promise", name: "confirmed", completion: { value: "yes" } });
    confirm.send(completion(1, {}));
    assert.deepEqual(view(await confirm.next()), { type: "output", result: { value: "ok" } });
    confirm.closeInput();

    const again = openHttp2Stream(session, "/invoke/Signup/confirm", start(2, { key: "w1" }), input("yes"), {
      type: "complete_promise",
      body: { name: "confirmed", completion: ok("yes"), result: failed(409, "promise was already completed") },
    });
    assert.deepEqual((await again.rest()).map(view), [
      { type: "output", result: { failure: { code: 409, message: "promise was already completed" } } },
      { type: "end" },
    ]);

    const status = openHttp2Stream(session, "/invoke/Signup/status", start(1, { key: "w1", state: [["status", ok("confirmed").value as Uint8Array]] }), input(undefined));
    assert.deepEqual(view((await status.rest())[1]!), { type: "output", result: { value: "confirmed" } });
  });

  test("Waiter.wait publishes an awakeable id and resumes when it is resolved", async () => {
    const s = openHttp2Stream(session, "/invoke/Waiter/wait", start(1), input("t1"));
    assert.deepEqual(view(await s.next()), { type: "awakeable" });
    const send = view(await s.next()) as { type: string; service: string; handler: string; key: string; parameter: string };
    assert.deepEqual([send.type, send.service, send.handler, send.key], ["send", "AwakeableRegistry", "put", "t1"]);
    assert.equal(send.parameter, awakeableId(INVOCATION_ID, 1, AWAKEABLE_KEY));
    s.send(completion(1, ok({ ok: true })));
    assert.deepEqual(view(await s.next()), { type: "output", result: { value: 'awakeable t1 resolved with {"ok":true}' } });
    s.closeInput();
  });

  test("Failer.fail ends with its TerminalError code and message", async () => {
    const s = openHttp2Stream(session, "/invoke/Failer/fail", start(1), input("x"));
    assert.deepEqual((await s.rest()).map(view), [{ type: "output", result: { failure: { code: 418, message: "failed: x" } } }, { type: "end" }]);
  });

  test("unknown handlers and wrong content types are refused", async () => {
    const missing = await getJson(session, "/invoke/Nope/greet");
    assert.equal(missing.status, 404);
    const out = await new Promise<number>((resolve) => {
      const req = session.request({ ":method": "POST", ":path": "/invoke/Greeter/greet", "content-type": "application/json" });
      req.on("response", (h) => resolve(Number(h[":status"])));
      req.end("{}");
    });
    assert.equal(out, 415);
  });
});

describe("endpoint().listen() over HTTP/1.1 and HTTP/2 on one port", () => {
  let child: ChildProcess;
  let port: number;
  let session: http2.ClientHttp2Session;

  before(async () => {
    const started = await startProcess(SOURCE_FIXTURES + "listen-endpoint.mjs", {}, /listening on \d+/);
    child = started.child;
    port = Number(/listening on (\d+)/.exec(started.line)?.[1]);
    session = http2.connect(`http://127.0.0.1:${port}`);
  });

  after(() => {
    // Tear down at once: a graceful close racing the kill would reset the socket mid-close.
    session.destroy();
    child.kill();
  });

  test("discovery answers over both HTTP versions", async () => {
    const h1 = await getJson({ port }, "/discover");
    const h2 = await getJson(session, "/discover");
    assert.equal(h1.status, 200);
    assert.deepEqual(h1.body, h2.body);
    assert.deepEqual((h1.body as { services: { name: string }[] }).services.map((s) => s.name), ["Greeter", "Counter"]);
  });

  test("HTTP/1.1 request/response: the response carries the new entries and ends the attempt", async () => {
    const done = await exchangeHttp({ port }, "/invoke/Greeter/greet", start(1), input("h1"));
    assert.deepEqual(done.map(view), [{ type: "output", result: { value: "Hello h1" } }, { type: "end" }]);
    const suspended = await exchangeHttp({ port }, "/invoke/Greeter/greetLater", start(1), input("h1"));
    assert.deepEqual(suspended.map(view), [{ type: "sleep", duration_ms: 1000 }, { type: "suspension", waiting_on: [1] }]);
    const resumed = await exchangeHttp({ port }, "/invoke/Greeter/greetLater", start(2), input("h1"), { type: "sleep", body: { duration_ms: 1000, result: {} } });
    assert.deepEqual(resumed.map(view), [{ type: "output", result: { value: "Hello later h1" } }, { type: "end" }]);
  });

  test("HTTP/2 request/response mode, chosen by header", async () => {
    const out = await exchangeHttp(session, "/invoke/Counter/add", start(1, { key: "c" }), input(3));
    assert.deepEqual(out.map(view), [
      { type: "get_state", key: "count", result: {} },
      { type: "set_state", key: "count", value: 3 },
      { type: "output", result: { value: 3 } },
      { type: "end" },
    ]);
  });

  test("HTTP/2 bidirectional streaming: the completion flows into the open request", async () => {
    const s = openHttp2Stream(session, "/invoke/Greeter/greetLater", start(1), input("h2"));
    assert.deepEqual(view(await s.next()), { type: "sleep", duration_ms: 1000 });
    s.send(completion(1, {}));
    assert.deepEqual(view(await s.next()), { type: "output", result: { value: "Hello later h2" } });
    assert.deepEqual(view(await s.next()), { type: "end" });
    s.closeInput();
  });
});
