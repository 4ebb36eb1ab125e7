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
  awakeableToken,
  decodeMessages,
  encodeMessage,
  isAwakeableId,
  parseAwakeableId,
  publicInvocationId,
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

test("invocation id vectors: the public text is made from the wire text start.id carries", () => {
  const cases = JSON.parse(readFileSync(dir + "invocation-ids.json", "utf8")) as { wire: string; public: string }[];
  assert.ok(cases.length >= 3);
  for (const c of cases) assert.equal(publicInvocationId(c.wire), c.public, JSON.stringify(c));
  assert.equal(publicInvocationId("not-an-id"), "not-an-id");
});

/** One case of awakeable-ids.json: the kernel derives `awakeable_key` from `secret`; the SDK sees only the key. */
type AwakeableCase = { invocation_id: string; entry: number; secret: string; awakeable_key: string; id: string };

test("awakeable id vectors: made from invocation id, entry and awakeable key, and parsed back", () => {
  const cases = JSON.parse(readFileSync(dir + "awakeable-ids.json", "utf8")) as AwakeableCase[];
  assert.ok(cases.length >= 3);
  for (const c of cases) {
    assert.equal(c.secret.length, 32, JSON.stringify(c));
    const key = new Uint8Array(Buffer.from(c.awakeable_key, "hex"));
    assert.equal(key.length, 32, JSON.stringify(c));
    assert.equal(awakeableId(c.invocation_id, c.entry, key), c.id, JSON.stringify(c));
    assert.equal(c.id.length, 92);
    assert.ok(isAwakeableId(c.id));
    assert.deepEqual(parseAwakeableId(c.id), { invocationId: c.invocation_id, index: c.entry, token: awakeableToken(key, c.entry) });
  }
});

test("an awakeable id depends on every byte of the awakeable key and on the entry", () => {
  const [first] = JSON.parse(readFileSync(dir + "awakeable-ids.json", "utf8")) as AwakeableCase[];
  const key = new Uint8Array(Buffer.from(first!.awakeable_key, "hex"));
  const seen = new Set([first!.id]);
  for (let i = 0; i < key.length; i++) {
    const other = key.slice();
    other[i] = (other[i] as number) ^ 1;
    seen.add(awakeableId(first!.invocation_id, first!.entry, other));
  }
  seen.add(awakeableId(first!.invocation_id, first!.entry + 1, key));
  assert.equal(seen.size, key.length + 2);
});

test("malformed awakeable ids are refused, and no id is made from a malformed invocation id or awakeable key", () => {
  const good = "awk_0123456789abcdeffedcba9876543210001122334455667700000001fe07257934eb38a9dca6b3f8c1c0b701";
  assert.ok(isAwakeableId(good));
  for (const bad of [
    "",
    "awk_",
    "awk_aW52XzFhMmIzYw_3",
    good.slice(0, -1),
    `${good}0`,
    good.toUpperCase(),
    good.replace("awk_", "awk-"),
    good.replace("awk_", "sign_"),
    `${good.slice(0, -1)}g`,
  ]) {
    assert.equal(parseAwakeableId(bad), undefined, bad);
    assert.equal(isAwakeableId(bad), false, bad);
  }
  const key = new Uint8Array(32);
  assert.throws(() => awakeableId("inv_test", 1, key), TypeError);
  // A 16-byte value (an old-style secret) is not a key.
  for (const length of [0, 16, 31, 33]) {
    assert.throws(() => awakeableId("inv_0123456789abcdeffedcba98765432100011223344556677", 1, new Uint8Array(length)), TypeError, `${length}`);
  }
  assert.throws(() => awakeableId("inv_0123456789abcdeffedcba98765432100011223344556677", -1, key), TypeError);
  assert.throws(() => awakeableId("inv_0123456789abcdeffedcba98765432100011223344556677", 2 ** 32, key), TypeError);
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

test("the manifest-schedules vector is what handlers declaring schedules announce", () => {
  const expected = JSON.parse(readFileSync(dir + "manifest-schedules.json", "utf8"));
  const fn = async () => undefined;
  const reports = service({
    name: "Reports",
    handlers: {
      nightly: handlers.handler(
        {
          schedule: [
            handlers.cron("0 3 * * *", { timezone: "Europe/Berlin", input: { scope: "all" }, catchUp: "latest" }),
            handlers.cron("@monthly", { name: "reports-quarterly", overlap: "queue" }),
          ],
        },
        fn,
      ),
    },
  });
  const cache = object({
    name: "Cache",
    handlers: {
      refresh: handlers.object.exclusive(
        { schedule: handlers.every({ minutes: 5 }, { key: "eu", catchUp: "all", catchUpMax: 3, overlap: "allow" }) },
        fn,
      ),
    },
  });
  assert.deepEqual(endpoint().bind(reports).bind(cache).manifest(), expected);
});

test("invalid schedules are refused when the manifest is built, naming the handler", () => {
  const fn = async () => undefined;
  const manifestOf = (schedule: Parameters<typeof handlers.handler>[0]) =>
    endpoint().bind(service({ name: "S", handlers: { h: handlers.handler(schedule, fn) } })).manifest();
  assert.throws(() => manifestOf({ schedule: {} }), /S\/h: schedule 1: give either cron or every/);
  assert.throws(() => manifestOf({ schedule: { cron: "@daily", every: 1000 } }), /give either cron or every/);
  assert.throws(() => manifestOf({ schedule: { every: 1000, timezone: "UTC" } }), /timezone applies to cron only/);
  assert.throws(() => manifestOf({ schedule: { every: 0 } }), /every must be at least 1 ms/);
  assert.throws(() => manifestOf({ schedule: handlers.cron("@daily", { name: "x", catchUp: "all", catchUpMax: 0 }) }), /S\/h: schedule x: catchUpMax/);
});

test("invalid retry and timeout options are refused when defined", () => {
  const fn = async () => undefined;
  assert.throws(() => service({ name: "A", handlers: { h: fn }, options: { retryPolicy: { maxAttempts: 0 } } }), /maxAttempts/);
  assert.throws(() => service({ name: "A", handlers: { h: fn }, options: { retryPolicy: { exponentiationFactor: 0.5 } } }), /exponentiationFactor/);
  assert.throws(() => service({ name: "A", handlers: { h: fn }, options: { inactivityTimeout: 0 } }), /inactivityTimeout/);
  const bad = service({ name: "B", handlers: { h: handlers.handler({ abortTimeout: { seconds: 0 } }, fn) } });
  assert.throws(() => endpoint().bind(bad).manifest(), /B\/h: abortTimeout/);
});

