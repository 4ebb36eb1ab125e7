/** The shared protocol vectors (also read by the Rust codec's tests) against the TypeScript codec. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import {
  FrameDecoder,
  MESSAGE_TYPES,
  ProtocolError,
  awakeableId,
  decodeMessages,
  encodeMessage,
  parseAwakeableId,
  type Message,
} from "@holdfast/sdk/protocol";
import { endpoint, service, object, workflow, handlers } from "@holdfast/sdk";

const dir = fileURLToPath(new URL("../../../tests/protocol-vectors/", import.meta.url));
const load = (sub: string) =>
  readdirSync(dir + sub)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((f) => ({ file: f, v: JSON.parse(readFileSync(`${dir}${sub}/${f}`, "utf8")) }));

/** `{"$bin": "<hex>"}` in a vector stands for binary. */
const fromJson = (v: unknown): unknown =>
  Array.isArray(v)
    ? v.map(fromJson)
    : v && typeof v === "object"
      ? "$bin" in v
        ? new Uint8Array(Buffer.from((v as { $bin: string }).$bin, "hex"))
        : Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fromJson(x)]))
      : v;
const toJson = (v: unknown): unknown =>
  v instanceof Uint8Array
    ? { $bin: Buffer.from(v).toString("hex") }
    : Array.isArray(v)
      ? v.map(toJson)
      : v && typeof v === "object"
        ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toJson(x)]))
        : v;

test("valid vectors encode to their bytes and decode to their bodies", () => {
  const vectors = load("messages");
  assert.ok(vectors.length > 0);
  for (const { file, v } of vectors) {
    const message = { type: v.type, flags: v.flags, body: fromJson(v.body) } as Message;
    assert.equal(Buffer.from(encodeMessage(message)).toString("hex"), v.hex, `${file}: encoding`);
    const [decoded, ...more] = decodeMessages(new Uint8Array(Buffer.from(v.hex, "hex")));
    assert.equal(more.length, 0, file);
    assert.equal(decoded?.type, v.type, file);
    assert.equal(decoded?.flags, v.flags, file);
    assert.equal(MESSAGE_TYPES[v.type as keyof typeof MESSAGE_TYPES], v.code, file);
    assert.deepEqual(toJson(decoded?.body), v.body, `${file}: decoding`);
  }
});

test("every message type has a vector", () => {
  const covered = new Set(load("messages").map(({ v }) => v.type));
  for (const type of Object.keys(MESSAGE_TYPES)) assert.ok(covered.has(type), `no vector for ${type}`);
});

test("invalid vectors are refused with their error kind", () => {
  for (const { file, v } of load("invalid")) {
    const bytes = new Uint8Array(Buffer.from(v.hex, "hex"));
    assert.throws(
      () => decodeMessages(bytes, v.max_frame_len),
      (e: unknown) => e instanceof ProtocolError && e.kind === v.error,
      file,
    );
  }
});

test("vectors decode the same when fed one byte at a time", () => {
  for (const { file, v } of load("messages")) {
    const bytes = Buffer.from(v.hex, "hex");
    const decoder = new FrameDecoder();
    const got: Message[] = [];
    for (const byte of bytes) got.push(...decoder.push(new Uint8Array([byte])));
    decoder.finish();
    assert.equal(got.length, 1, file);
    assert.deepEqual(toJson(got[0]?.body), v.body, file);
  }
});

test("awakeable id vectors format and parse", () => {
  const cases = JSON.parse(readFileSync(dir + "awakeable-ids.json", "utf8")) as { invocation_id: string; entry: number; id: string }[];
  for (const c of cases) {
    assert.equal(awakeableId(c.invocation_id, c.entry), c.id);
    assert.deepEqual(parseAwakeableId(c.id), { invocationId: c.invocation_id, index: c.entry });
  }
  for (const bad of ["awk_", "sign_abc_1", "awk_aW52_", "awk_aW52_01", "awk_aW52_x", "awk_!!_1", "awk_aW52_99999999999"]) {
    assert.equal(parseAwakeableId(bad), undefined, bad);
  }
});

test("the manifest vector is what an endpoint with the anchor's shapes announces", () => {
  const expected = JSON.parse(readFileSync(dir + "manifest.json", "utf8"));
  const fn = async () => undefined;
  const ep = endpoint();
  for (const def of [
    service({ name: "Greeter", handlers: { greet: fn } }),
    object({ name: "Counter", handlers: { add: fn, get: handlers.object.shared(fn) } }),
    service({ name: "Steps", handlers: { run3: fn } }),
    service({ name: "Chain", handlers: { call: fn } }),
    service({ name: "Sleeper", handlers: { nap: fn } }),
    workflow({ name: "Signup", handlers: { run: fn, confirm: fn, status: fn } }),
    object({ name: "AwakeableRegistry", handlers: { put: fn, get: handlers.object.shared(fn) } }),
    service({ name: "Waiter", handlers: { wait: fn } }),
    service({ name: "Failer", handlers: { fail: fn } }),
  ]) {
    ep.bind(def);
  }
  assert.deepEqual(ep.manifest(), expected);
});

test("the manifest-overrides vector is what an endpoint with Restate-shaped retry and timeout options announces", () => {
  const expected = JSON.parse(readFileSync(dir + "manifest-overrides.json", "utf8"));
  const fn = async () => undefined;
  const payments = service({
    name: "Payments",
    handlers: {
      charge: handlers.handler(
        {
          retryPolicy: { initialInterval: { milliseconds: 250 }, maxAttempts: 10, onMaxAttempts: "kill" },
          abortTimeout: { seconds: 90 },
        },
        fn,
      ),
      refund: fn,
    },
    options: {
      retryPolicy: {
        initialInterval: 100,
        exponentiationFactor: 1.5,
        maxInterval: { seconds: 30 },
        maxAttempts: 3,
        onMaxAttempts: "pause",
      },
      inactivityTimeout: { seconds: 5 },
      abortTimeout: { minutes: 2 },
    },
  });
  const cart = object({
    name: "Cart",
    handlers: { add: handlers.object.exclusive({ inactivityTimeout: 2000 }, fn), get: handlers.object.shared(fn) },
  });
  const ep = endpoint().bind(payments).bind(cart);
  assert.deepEqual(ep.manifest(), expected);
});

test("invalid retry and timeout options are refused when defined", () => {
  const fn = async () => undefined;
  assert.throws(() => service({ name: "A", handlers: { h: fn }, options: { retryPolicy: { maxAttempts: 0 } } }), /maxAttempts/);
  assert.throws(() => service({ name: "A", handlers: { h: fn }, options: { retryPolicy: { exponentiationFactor: 0.5 } } }), /exponentiationFactor/);
  assert.throws(() => service({ name: "A", handlers: { h: fn }, options: { inactivityTimeout: 0 } }), /inactivityTimeout/);
  const bad = service({ name: "B", handlers: { h: handlers.handler({ abortTimeout: { seconds: 0 } }, fn) } });
  assert.throws(() => endpoint().bind(bad).manifest(), /B\/h: abortTimeout/);
});

