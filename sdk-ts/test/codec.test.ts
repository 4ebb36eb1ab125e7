/**
 * The frame codec's fast paths against the general MessagePack codec: for random messages, well
 * formed or not, encoding gives the same bytes and decoding the same bodies (or the same errors) as
 * `@msgpack/msgpack` with sorted keys followed by `checkBody`.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { decode, encode } from "@msgpack/msgpack";
import {
  FrameDecoder,
  MESSAGE_TYPES,
  ProtocolError,
  SCHEMAS,
  checkBody,
  decodeMessages,
  encodeMessage,
  publicInvocationId,
  type Message,
  type MessageName,
} from "@holdfast/sdk/protocol";

/** A small deterministic PRNG (mulberry32), so that a failure reproduces. */
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)] as T;
  return { next, int, pick, chance: (p: number) => next() < p };
}
type Rng = ReturnType<typeof rng>;

const TYPES = Object.keys(MESSAGE_TYPES) as MessageName[];

const STRINGS = [
  "",
  "a",
  "step1",
  "content-type",
  "inv_0123456789abcdef0123456789abcdef0123456789abcdef",
  "héllo wörld",
  "日本語のテキスト",
  "emoji 😀 and more 🎉",
  "\ud800 lone high",
  "lone low \udc00",
  "\ufeffstarts with a byte-order mark",
  "x".repeat(31),
  "x".repeat(32),
  "y".repeat(50),
  "y".repeat(51),
  "z".repeat(255),
  "z".repeat(256),
  "é".repeat(40),
  "é".repeat(130),
  "\ud83d".repeat(60),
];

function randomString(r: Rng): string {
  if (r.chance(0.7)) return r.pick(STRINGS);
  const length = r.int(80);
  let s = "";
  for (let i = 0; i < length; i++) {
    const kind = r.int(10);
    s += String.fromCharCode(kind < 7 ? 32 + r.int(95) : kind < 8 ? 0x80 + r.int(0x780) : kind < 9 ? 0x800 + r.int(0xf7ff) : r.int(0x80));
  }
  return s;
}

function randomUint(r: Rng, max: number): number {
  const edges = [0, 1, 31, 127, 128, 255, 256, 0xffff, 0x10000, 0xffff_ffff, 0x1_0000_0000, Number.MAX_SAFE_INTEGER].filter((n) => n <= max);
  return r.chance(0.6) ? r.pick(edges) : Math.floor(r.next() * Math.min(max, 2 ** 40));
}

function randomBytes(r: Rng, length = r.pick([0, 1, 15, 16, 32, 255, 256, 1000, r.int(64)])): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < Math.min(length, 64); i++) bytes[i] = r.int(256);
  return bytes;
}

function randomOutcome(r: Rng): unknown {
  switch (r.int(4)) {
    case 0:
      return {};
    case 1:
      return { value: randomBytes(r) };
    case 2:
      return { failure: { code: randomUint(r, 0xffff), message: randomString(r) } };
    default:
      return { keys: Array.from({ length: r.int(20) }, () => randomString(r)) };
  }
}

function randomField(r: Rng, kind: string): unknown {
  // Now and then a value above 64 KiB (the widest length forms).
  if (r.chance(0.01) && kind === "str") return "w".repeat(70_000);
  if (r.chance(0.01) && kind === "bin") return randomBytes(r, 70_000);
  switch (kind) {
    case "u16":
      return randomUint(r, 0xffff);
    case "u32":
      return randomUint(r, 0xffff_ffff);
    case "u64":
      return randomUint(r, Number.MAX_SAFE_INTEGER);
    case "bool":
      return r.chance(0.5);
    case "str":
      return randomString(r);
    case "bin":
      return randomBytes(r);
    case "key":
      return randomBytes(r, 32);
    case "outcome":
      return randomOutcome(r);
    case "indexes":
      return Array.from({ length: r.pick([0, 1, 3, 15, 16, 40]) }, () => randomUint(r, 0xffff_ffff));
    case "headers":
      return Array.from({ length: r.pick([0, 1, 6, 20]) }, () => [randomString(r), randomString(r)]);
    case "state":
      return Array.from({ length: r.pick([0, 1, 5, 17]) }, () => [randomString(r), randomBytes(r)]);
    default:
      throw new Error(kind);
  }
}

/** Values the schema does not expect, for the paths that must fall back or fail alike. */
function oddValue(r: Rng): unknown {
  return r.pick<() => unknown>([
    () => null,
    () => -1,
    () => -200,
    () => -70_000,
    () => -(2 ** 40),
    () => 1.5,
    () => 2 ** 60,
    () => Number.NaN,
    () => "text",
    () => new Uint8Array([1, 2, 3]),
    () => Buffer.from("buffer"),
    () => [1, "two", null, undefined, [3]],
    () => ({ nested: { deeper: [1, 2] }, b: undefined, a: 1 }),
    () => ({ value: new Uint8Array(2), extra: "field" }),
    () => ({ failure: { code: 500, message: "m", extra: true } }),
    () => ({ value: null }),
    () => ({ value: new Uint8Array(1), keys: ["a"] }),
    () => ({ failure: { code: 1.5, message: "m" } }),
    () => new Date(0),
    () => 10n,
    () => Object.assign(Object.create(null), { z: 1, a: 2 }),
    () => new Int16Array([1, 2]),
  ])();
}

function randomBody(r: Rng, type: MessageName, odd: boolean): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  for (const [field, spec] of Object.entries(SCHEMAS[type] as Record<string, string>)) {
    const optional = spec.endsWith("?");
    if (optional && r.chance(0.4)) continue;
    body[field] = odd && r.chance(0.3) ? oddValue(r) : randomField(r, spec.replace("?", ""));
  }
  if (odd && r.chance(0.3)) body[r.pick(["unknown", "zzz", "__extra"])] = oddValue(r);
  return body;
}

/** The frame as the general codec alone makes it. */
function referenceFrame(message: Message): Uint8Array {
  const fields: Record<string, unknown> = {};
  const body = message.body as Record<string, unknown>;
  for (const field of Object.keys(SCHEMAS[message.type])) {
    if (body[field] !== undefined) fields[field] = body[field];
  }
  const payload = encode(fields, { sortKeys: true, ignoreUndefined: true });
  const frame = new Uint8Array(8 + payload.length);
  const view = new DataView(frame.buffer);
  view.setUint16(0, MESSAGE_TYPES[message.type]);
  view.setUint16(2, message.flags ?? 0);
  view.setUint32(4, payload.length);
  frame.set(payload, 8);
  return frame;
}

function outcomeOf<T>(f: () => T): { ok: T } | { error: string } {
  try {
    return { ok: f() };
  } catch (error) {
    const e = error as Error;
    return { error: `${e.constructor.name} ${(e as ProtocolError).kind ?? ""}: ${e.message}` };
  }
}

const describe = (body: unknown) =>
  JSON.stringify(body, (_k, v) => (typeof v === "bigint" ? `${v}n` : v instanceof Uint8Array ? `bytes(${v.length})` : v)).slice(0, 500);
const hex = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");

test("encoding gives the general codec's bytes", () => {
  const r = rng(1);
  const kept: { frame: Uint8Array; expected: string }[] = [];
  for (let i = 0; i < 20_000; i++) {
    const type = r.pick(TYPES);
    const message = { type, flags: r.pick([0, 0, 1]), body: randomBody(r, type, r.chance(0.3)) } as Message;
    const got = outcomeOf(() => hex(encodeMessage(message)));
    const want = outcomeOf(() => hex(referenceFrame(message)));
    if (JSON.stringify(got) !== JSON.stringify(want)) assert.deepEqual(got, want, `${type} ${describe(message.body)}`);
    if ("ok" in got && kept.length < 5000) kept.push({ frame: encodeMessage(message), expected: got.ok });
  }
  // Frames share buffers: none may have been overwritten by a later one.
  for (const { frame, expected } of kept) assert.equal(hex(frame), expected);
});

/** Body bytes that are mostly valid, sometimes encoded unusually, sometimes damaged. */
function randomBodyBytes(r: Rng, type: MessageName): Uint8Array {
  const odd = r.chance(0.3);
  const body = randomBody(r, type, odd);
  if (r.chance(0.1)) {
    const fields = Object.keys(body);
    if (fields.length > 0) body[r.pick(fields)] = null;
  }
  let bytes: Uint8Array;
  try {
    bytes = encode(body, { sortKeys: r.chance(0.5), ignoreUndefined: true });
  } catch {
    bytes = encode({});
  }
  if (r.chance(0.05)) {
    // A duplicate key: the same map twice over, announced as one map of twice the size (when both fit a fixmap).
    const head = bytes[0] as number;
    if (head >= 0x80 && head < 0x88) bytes = new Uint8Array([head + (head - 0x80), ...bytes.subarray(1), ...bytes.subarray(1)]);
  }
  if (r.chance(0.25)) {
    const copy = new Uint8Array(bytes);
    const damage = r.int(3);
    if (damage === 0 && copy.length > 0) copy[r.int(copy.length)] = r.int(256);
    if (damage === 1) return copy.subarray(0, r.int(copy.length + 1));
    if (damage === 2) return new Uint8Array([...copy, r.int(256)]);
    return copy;
  }
  return bytes;
}

test("decoding gives the general codec's bodies and errors", () => {
  const r = rng(2);
  for (let i = 0; i < 20_000; i++) {
    const type = r.pick(TYPES);
    const body = randomBodyBytes(r, type);
    const frame = new Uint8Array(8 + body.length);
    const view = new DataView(frame.buffer);
    view.setUint16(0, MESSAGE_TYPES[type]);
    view.setUint16(2, 0);
    view.setUint32(4, body.length);
    frame.set(body, 8);
    // Kernel frames arrive as Buffers: decoded binaries are then Buffers too.
    const input = r.chance(0.5) ? Buffer.from(frame) : frame;
    const bodyView = input.subarray(8);
    const got = outcomeOf(() => decodeMessages(input)[0]?.body);
    const want = outcomeOf(() => {
      let raw: unknown;
      try {
        raw = decode(bodyView);
      } catch (e) {
        throw new ProtocolError("invalid_body", `${type}: ${(e as Error).message}`);
      }
      return checkBody(type, raw);
    });
    assert.deepStrictEqual(got, want, `${type} ${hex(body.subarray(0, 200))}`);
  }
});

test("a frame too large for a slab stands alone and later frames are intact", () => {
  const big = { type: "input", body: { value: new Uint8Array(200_000).fill(7) } } as Message;
  const small = { type: "run", body: { name: "step" } } as Message;
  const frames = [encodeMessage(small), encodeMessage(big), encodeMessage(small), encodeMessage(big), encodeMessage(small)];
  const want = [small, big, small, big, small].map((m) => hex(referenceFrame(m)));
  assert.deepEqual(frames.map(hex), want);
});

test("a frame with an empty body is an invalid body, not a hang", () => {
  for (const type of ["end", "state_keys", "start"] as const) {
    const frame = new Uint8Array(8);
    new DataView(frame.buffer).setUint16(0, MESSAGE_TYPES[type]);
    assert.throws(
      () => decodeMessages(frame),
      (e: unknown) => e instanceof ProtocolError && e.kind === "invalid_body",
      type,
    );
  }
});

test("public invocation ids match the BigInt reference", () => {
  const swapped = (hex: string, width: number) => {
    let value = BigInt("0x" + (hex.match(/../g) ?? []).reverse().join(""));
    let out = "";
    for (let i = 0; i < width; i++) {
      out = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"[Number(value % 62n)] + out;
      value /= 62n;
    }
    return out;
  };
  const r = rng(3);
  for (let i = 0; i < 2000; i++) {
    const hex = Array.from({ length: 48 }, () => (r.chance(0.1) ? r.pick(["0", "f"]) : r.int(16).toString(16))).join("");
    const want = `inv_1${swapped(hex.slice(0, 16), 11)}${swapped(hex.slice(16), 22)}`;
    assert.equal(publicInvocationId(`inv_${hex}`), want, hex);
  }
  assert.equal(publicInvocationId(`inv_${"f".repeat(48)}`), `inv_1${swapped("f".repeat(16), 11)}${swapped("f".repeat(32), 22)}`);
  assert.equal(publicInvocationId(`inv_${"0".repeat(48)}`), `inv_1${"0".repeat(33)}`);
});

test("a stream of frames decodes the same whole, in random pieces and frame by frame", () => {
  const r = rng(4);
  const messages: Message[] = [];
  for (let i = 0; i < 3000; i++) {
    const type = r.pick(TYPES);
    messages.push({ type, flags: r.pick([0, 1]), body: randomBody(r, type, false) } as Message);
  }
  const frames = messages.map((m) => referenceFrame(m));
  const one = frames.map((f) => decodeMessages(f)[0]);
  const stream = new Uint8Array(Buffer.concat(frames));
  assert.deepStrictEqual(decodeMessages(stream), one);
  const decoder = new FrameDecoder();
  const got: Message[] = [];
  for (let at = 0; at < stream.length; ) {
    const size = r.pick([1, 2, 7, 8, 9, 100, 5000, 100_000]);
    got.push(...decoder.push(stream.subarray(at, at + size)));
    at += size;
  }
  decoder.finish();
  assert.deepStrictEqual(got, one);
  assert.equal(got.length, messages.length);
});

test("a decoding error drops what was buffered", () => {
  const decoder = new FrameDecoder();
  const good = encodeMessage({ type: "entry_ack", body: { entry: 1 } });
  const bad = new Uint8Array([0x00, 0x03, 0, 0, 0, 0, 0, 2, 0x81, 0xc1]);
  assert.throws(() => decoder.push(new Uint8Array([...bad, ...good])), ProtocolError);
  decoder.finish();
});
