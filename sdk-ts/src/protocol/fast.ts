/**
 * Fast paths of the frame codec, for messages as they are normally written: a MessagePack writer
 * that encodes a body straight into its frame, and a reader for well-formed bodies.
 *
 * Both are shortcuts only. They give exactly the bytes and values of the general path (the
 * `@msgpack/msgpack` codec with sorted keys and `checkBody`), and whenever they meet something
 * they do not handle (an unusual value, an unknown field, a non-canonical form, anything malformed)
 * they give up and return `undefined`, and the caller takes the general path, which also produces
 * every error.
 */
import { MESSAGE_TYPES, SCHEMAS, type MessageName } from "./messages.js";

/** Thrown inside the fast paths to give up; never escapes this module. */
const GIVE_UP: unique symbol = Symbol("give up");

// ---- writer ------------------------------------------------------------------------------------

/**
 * Frames are carved out of shared slabs (like Node's Buffer pool): a frame is a view of its slab,
 * which lives as long as any of its frames. A frame that does not fit gets a buffer of its own.
 */
const SLAB_BYTES = 32 * 1024;
/** Below this much room, a new frame starts a new slab rather than risk growing. */
const SLAB_MIN_ROOM = 512;
/** Strings longer than this (in UTF-16 units) are encoded by TextEncoder, as the general codec does. */
const TEXT_ENCODER_THRESHOLD = 50;
/** Nesting beyond this is left to the general codec (which refuses depth above 100). */
const MAX_DEPTH = 64;

const textEncoder = new TextEncoder();

let buf: Uint8Array = new Uint8Array(0);
let view = new DataView(buf.buffer);
let pos = 0;
/** Offset in `buf` of the frame being written. */
let frameStart = 0;
let writing = false;

/** Makes room for `n` more bytes of the frame being written, moving it to a larger buffer if need be. */
function reserve(n: number): void {
  if (pos + n <= buf.length) return;
  const used = pos - frameStart;
  const next = new Uint8Array(Math.max(SLAB_BYTES, 2 * (used + n)));
  next.set(buf.subarray(frameStart, pos));
  buf = next;
  view = new DataView(next.buffer);
  frameStart = 0;
  pos = used;
}

function u8(b: number): void {
  buf[pos++] = b;
}

function writeUint(value: number): void {
  // The general codec's integer forms: the smallest that holds the value.
  if (value < 0x80) {
    reserve(1);
    buf[pos++] = value;
  } else if (value < 0x100) {
    reserve(2);
    buf[pos++] = 0xcc;
    buf[pos++] = value;
  } else if (value < 0x10000) {
    reserve(3);
    buf[pos++] = 0xcd;
    view.setUint16(pos, value);
    pos += 2;
  } else if (value < 0x100000000) {
    reserve(5);
    buf[pos++] = 0xce;
    view.setUint32(pos, value);
    pos += 4;
  } else {
    reserve(9);
    buf[pos++] = 0xcf;
    view.setUint32(pos, value / 0x100000000);
    view.setUint32(pos + 4, value);
    pos += 8;
  }
}

function writeNumber(value: number): void {
  if (Number.isSafeInteger(value)) {
    if (value >= 0) return writeUint(value);
    reserve(9);
    if (value >= -0x20) {
      u8(0xe0 | (value + 0x20));
    } else if (value >= -0x80) {
      u8(0xd0);
      view.setInt8(pos, value);
      pos += 1;
    } else if (value >= -0x8000) {
      u8(0xd1);
      view.setInt16(pos, value);
      pos += 2;
    } else if (value >= -0x80000000) {
      u8(0xd2);
      view.setInt32(pos, value);
      pos += 4;
    } else {
      u8(0xd3);
      view.setUint32(pos, Math.floor(value / 0x100000000));
      view.setUint32(pos + 4, value);
      pos += 8;
    }
    return;
  }
  reserve(9);
  u8(0xcb);
  view.setFloat64(pos, value);
  pos += 8;
}

/** UTF-8 length of `s`, lone surrogates counting 3 bytes (as the general codec counts them). */
function utf8Length(s: string): number {
  const n = s.length;
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      bytes += 1;
    } else if (c < 0x800) {
      bytes += 2;
    } else {
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
        const d = s.charCodeAt(i + 1);
        if ((d & 0xfc00) === 0xdc00) {
          i++;
          c = 0x10000;
        }
      }
      bytes += c >= 0x10000 ? 4 : 3;
    }
  }
  return bytes;
}

/** Writes `s` as UTF-8 at `pos` (room already reserved), encoding lone surrogates as 3 bytes. */
function writeUtf8(s: string): void {
  const n = s.length;
  for (let i = 0; i < n; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      buf[pos++] = c;
      continue;
    }
    if (c < 0x800) {
      buf[pos++] = 0xc0 | (c >> 6);
    } else {
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
        const d = s.charCodeAt(i + 1);
        if ((d & 0xfc00) === 0xdc00) {
          i++;
          c = ((c & 0x3ff) << 10) + (d & 0x3ff) + 0x10000;
        }
      }
      if (c < 0x10000) {
        buf[pos++] = 0xe0 | (c >> 12);
        buf[pos++] = 0x80 | ((c >> 6) & 0x3f);
      } else {
        buf[pos++] = 0xf0 | (c >> 18);
        buf[pos++] = 0x80 | ((c >> 12) & 0x3f);
        buf[pos++] = 0x80 | ((c >> 6) & 0x3f);
      }
    }
    buf[pos++] = 0x80 | (c & 0x3f);
  }
}

function writeString(s: string): void {
  const length = utf8Length(s);
  reserve(5 + length);
  if (length < 32) {
    u8(0xa0 + length);
  } else if (length < 0x100) {
    u8(0xd9);
    u8(length);
  } else if (length < 0x10000) {
    u8(0xda);
    view.setUint16(pos, length);
    pos += 2;
  } else if (length < 0x100000000) {
    u8(0xdb);
    view.setUint32(pos, length);
    pos += 4;
  } else {
    throw GIVE_UP;
  }
  if (s.length > TEXT_ENCODER_THRESHOLD) {
    textEncoder.encodeInto(s, buf.subarray(pos, pos + length));
    pos += length;
  } else {
    writeUtf8(s);
  }
}

function writeBin(bytes: Uint8Array): void {
  const size = bytes.length;
  reserve(5 + size);
  if (size < 0x100) {
    u8(0xc4);
    u8(size);
  } else if (size < 0x10000) {
    u8(0xc5);
    view.setUint16(pos, size);
    pos += 2;
  } else if (size < 0x100000000) {
    u8(0xc6);
    view.setUint32(pos, size);
    pos += 4;
  } else {
    throw GIVE_UP;
  }
  if (size < 16) {
    for (let i = 0; i < size; i++) buf[pos + i] = bytes[i] as number;
  } else {
    buf.set(bytes, pos);
  }
  pos += size;
}

/** Writes a map or array header (`fix` is the fixmap/fixarray base, `wide` the 16-bit form's tag). */
function writeCount(count: number, fix: number, wide: number): void {
  reserve(5);
  if (count < 16) {
    u8(fix + count);
  } else if (count < 0x10000) {
    u8(wide);
    view.setUint16(pos, count);
    pos += 2;
  } else {
    u8(wide + 1);
    view.setUint32(pos, count);
    pos += 4;
  }
}

function writeValue(value: unknown, depth: number): void {
  if (value === null || value === undefined) {
    reserve(1);
    u8(0xc0);
    return;
  }
  switch (typeof value) {
    case "boolean":
      reserve(1);
      u8(value ? 0xc3 : 0xc2);
      return;
    case "number":
      return writeNumber(value);
    case "string":
      return writeString(value);
    case "object":
      break;
    default:
      throw GIVE_UP;
  }
  if (depth > MAX_DEPTH) throw GIVE_UP;
  if (value instanceof Uint8Array) return writeBin(value);
  if (Array.isArray(value)) {
    writeCount(value.length, 0x90, 0xdc);
    for (const item of value) writeValue(item, depth + 1);
    return;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) throw GIVE_UP;
  const map = value as Record<string, unknown>;
  const keys = Object.keys(map).sort();
  let count = 0;
  for (const key of keys) if (map[key] !== undefined) count++;
  writeCount(count, 0x80, 0xde);
  for (const key of keys) {
    const v = map[key];
    if (v === undefined) continue;
    writeString(key);
    writeValue(v, depth + 1);
  }
}

/** A top-level field of a message body: its name and its name already encoded. */
interface FieldKey {
  name: string;
  encoded: Uint8Array;
}

function encodedName(name: string): Uint8Array {
  const bytes = textEncoder.encode(name);
  if (bytes.length >= 32) throw new Error(`field name ${name} is too long for a fixstr`);
  const out = new Uint8Array(bytes.length + 1);
  out[0] = 0xa0 + bytes.length;
  out.set(bytes, 1);
  return out;
}

/** Each message's fields in the order the general codec writes them: sorted. */
const SORTED_FIELDS = new Map<string, FieldKey[]>(
  Object.entries(SCHEMAS).map(([type, schema]) => [
    type,
    Object.keys(schema)
      .sort()
      .map((name) => ({ name, encoded: encodedName(name) })),
  ]),
);

/** Where the next frame goes: the current slab, or a fresh one when it is (nearly) full. */
function beginFrame(): void {
  if (buf.length - pos < SLAB_MIN_ROOM || buf.length > SLAB_BYTES) {
    buf = new Uint8Array(SLAB_BYTES);
    view = new DataView(buf.buffer);
    pos = 0;
  }
  frameStart = pos;
}

/**
 * The complete frame (header and body) of a message, or `undefined` to leave it to the general
 * codec. `body` is read the way the general path reads it: the schema's fields, undefined ones left out.
 */
export function encodeFrameFast(type: MessageName, flags: number, body: Record<string, unknown>): Uint8Array | undefined {
  const fields = SORTED_FIELDS.get(type);
  if (fields === undefined || writing) return undefined;
  writing = true;
  beginFrame();
  try {
    reserve(9);
    view.setUint16(pos, MESSAGE_TYPES[type]);
    view.setUint16(pos + 2, flags);
    pos += 8;
    // Each field is read twice, as the general path reads it (once to count, once to write).
    let count = 0;
    for (const field of fields) if (body[field.name] !== undefined) count++;
    writeCount(count, 0x80, 0xde);
    for (const field of fields) {
      const value = body[field.name];
      if (value === undefined) continue;
      // A field that changed between the reads (a getter) is left to the general path.
      if (--count < 0) throw GIVE_UP;
      const name = field.encoded;
      reserve(name.length);
      for (let j = 0; j < name.length; j++) buf[pos++] = name[j] as number;
      writeValue(value, 2);
    }
    if (count !== 0) throw GIVE_UP;
    view.setUint32(frameStart + 4, pos - frameStart - 8);
    const frame = new Uint8Array(buf.buffer, frameStart, pos - frameStart);
    // A buffer grown for one large frame is that frame's alone.
    if (buf.length > SLAB_BYTES) pos = buf.length;
    return frame;
  } catch (error) {
    pos = frameStart;
    if (error === GIVE_UP) return undefined;
    throw error;
  } finally {
    writing = false;
  }
}

// ---- reader ------------------------------------------------------------------------------------

type Kind = "u16" | "u32" | "u64" | "bool" | "str" | "bin" | "key" | "outcome" | "indexes" | "headers" | "state";

interface FieldSpec {
  name: string;
  /** The name's bytes (ASCII). */
  bytes: Uint8Array;
  kind: Kind;
  optional: boolean;
}

/** Each message's fields in schema order (the order of the decoded body's properties). */
const SCHEMA_FIELDS = new Map<string, FieldSpec[]>(
  Object.entries(SCHEMAS).map(([type, schema]) => [
    type,
    Object.entries(schema as Record<string, string>).map(([name, spec]) => ({
      name,
      bytes: textEncoder.encode(name),
      kind: spec.replace("?", "") as Kind,
      optional: spec.endsWith("?"),
    })),
  ]),
);

const fatalDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Node's Latin-1 decoder of a byte range of any Uint8Array, the quickest way to read ASCII (when present). */
const latin1Slice = (Buffer.prototype as unknown as { latin1Slice?: (this: Uint8Array, start: number, end: number) => string }).latin1Slice;

let rb: Uint8Array = new Uint8Array(0);
let rp = 0;
let rend = 0;

function need(n: number): void {
  if (rp + n > rend) throw GIVE_UP;
}

function readByte(): number {
  if (rp >= rend) throw GIVE_UP;
  return rb[rp++] as number;
}

/** A big-endian u16 at `rp` (bounds checked by the caller). */
function u16At(): number {
  const v = ((rb[rp] as number) << 8) | (rb[rp + 1] as number);
  rp += 2;
  return v;
}

/** A big-endian u32 at `rp` (bounds checked by the caller). */
function u32At(): number {
  const v = (rb[rp] as number) * 0x1000000 + (((rb[rp + 1] as number) << 16) | ((rb[rp + 2] as number) << 8) | (rb[rp + 3] as number));
  rp += 4;
  return v;
}

function readUint(max: number): number {
  const tag = readByte();
  let value: number;
  if (tag < 0x80) {
    value = tag;
  } else if (tag === 0xcc) {
    value = readByte();
  } else if (tag === 0xcd) {
    need(2);
    value = u16At();
  } else if (tag === 0xce) {
    need(4);
    value = u32At();
  } else if (tag === 0xcf) {
    need(8);
    const high = u32At();
    // Above 2^53 - 1: left to the general path (which refuses it).
    if (high > 0x1fffff) throw GIVE_UP;
    value = high * 0x100000000 + u32At();
  } else {
    throw GIVE_UP;
  }
  if (value > max) throw GIVE_UP;
  return value;
}

/** Reads a map (`map` true) or array header and returns the number of entries. */
function readCount(map: boolean): number {
  const tag = readByte();
  const fix = map ? 0x80 : 0x90;
  if (tag >= fix && tag < fix + 16) return tag - fix;
  const wide = map ? 0xde : 0xdc;
  if (tag === wide) {
    need(2);
    return u16At();
  }
  if (tag === wide + 1) {
    need(4);
    return u32At();
  }
  throw GIVE_UP;
}

/** Reads a string header and returns the byte length of the string that follows. */
function readStrLength(): number {
  const tag = readByte();
  let length: number;
  if (tag >= 0xa0 && tag <= 0xbf) {
    length = tag - 0xa0;
  } else if (tag === 0xd9) {
    length = readByte();
  } else if (tag === 0xda) {
    need(2);
    length = u16At();
  } else if (tag === 0xdb) {
    need(4);
    length = u32At();
  } else {
    throw GIVE_UP;
  }
  need(length);
  return length;
}

function readStr(): string {
  const length = readStrLength();
  const start = rp;
  const end = start + length;
  rp = end;
  let ascii = true;
  for (let i = start; i < end; i++) {
    if ((rb[i] as number) >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return latin1Slice !== undefined ? latin1Slice.call(rb, start, end) : fatalDecoder.decode(rb.subarray(start, end));
  // Valid UTF-8 reads the same on every path; a leading byte-order mark or invalid UTF-8 does not.
  if (length >= 3 && rb[start] === 0xef && rb[start + 1] === 0xbb && rb[start + 2] === 0xbf) throw GIVE_UP;
  try {
    return fatalDecoder.decode(rb.subarray(start, end));
  } catch {
    throw GIVE_UP;
  }
}

function readBin(): Uint8Array {
  const tag = readByte();
  let length: number;
  if (tag === 0xc4) {
    length = readByte();
  } else if (tag === 0xc5) {
    need(2);
    length = u16At();
  } else if (tag === 0xc6) {
    need(4);
    length = u32At();
  } else {
    throw GIVE_UP;
  }
  need(length);
  const bytes = rb.subarray(rp, rp + length);
  rp += length;
  return bytes;
}

/** Reads a map key and returns the index of the name in `names` it spells, or -1. */
function readKey(names: readonly { bytes: Uint8Array }[]): number {
  const length = readStrLength();
  const start = rp;
  rp += length;
  for (let i = 0; i < names.length; i++) {
    const name = (names[i] as { bytes: Uint8Array }).bytes;
    if (name.length !== length) continue;
    let j = 0;
    while (j < length && rb[start + j] === name[j]) j++;
    if (j === length) return i;
  }
  return -1;
}

const OUTCOME_KEYS = ["value", "failure", "keys"].map((name) => ({ bytes: textEncoder.encode(name) }));
const FAILURE_KEYS = ["code", "message"].map((name) => ({ bytes: textEncoder.encode(name) }));

function readOutcome(): { value?: Uint8Array; failure?: { code: number; message: string }; keys?: string[] } {
  const n = readCount(true);
  if (n > 1) throw GIVE_UP;
  if (n === 0) return {};
  switch (readKey(OUTCOME_KEYS)) {
    case 0:
      return { value: readBin() };
    case 1: {
      if (readCount(true) !== 2) throw GIVE_UP;
      let code: number | undefined;
      let message: string | undefined;
      for (let i = 0; i < 2; i++) {
        const key = readKey(FAILURE_KEYS);
        if (key === 0 && code === undefined) code = readUint(0xffff);
        else if (key === 1 && message === undefined) message = readStr();
        else throw GIVE_UP;
      }
      return { failure: { code: code as number, message: message as string } };
    }
    case 2: {
      const count = readCount(false);
      const keys: string[] = [];
      for (let i = 0; i < count; i++) keys.push(readStr());
      return { keys };
    }
    default:
      throw GIVE_UP;
  }
}

function readPairs<V>(second: () => V): [string, V][] {
  const count = readCount(false);
  const out: [string, V][] = [];
  for (let i = 0; i < count; i++) {
    if (readCount(false) !== 2) throw GIVE_UP;
    const first = readStr();
    out.push([first, second()]);
  }
  return out;
}

function readField(kind: Kind): unknown {
  switch (kind) {
    case "u16":
      return readUint(0xffff);
    case "u32":
      return readUint(0xffff_ffff);
    case "u64":
      return readUint(Number.MAX_SAFE_INTEGER);
    case "bool": {
      const tag = readByte();
      if (tag === 0xc2) return false;
      if (tag === 0xc3) return true;
      throw GIVE_UP;
    }
    case "str":
      return readStr();
    case "bin":
      return readBin();
    case "key": {
      const bytes = readBin();
      if (bytes.length !== 32) throw GIVE_UP;
      return bytes;
    }
    case "outcome":
      return readOutcome();
    case "indexes": {
      const count = readCount(false);
      const out: number[] = [];
      for (let i = 0; i < count; i++) out.push(readUint(0xffff_ffff));
      return out;
    }
    case "headers":
      return readPairs(readStr);
    case "state":
      return readPairs(readBin);
  }
}

/**
 * The checked body of a message of `type` whose bytes are `start` to `end` of `data` (as `checkBody`
 * would return it), or `undefined` to leave the body to the general path.
 */
export function decodeBodyFast(type: MessageName, data: Uint8Array, start: number, end: number): Record<string, unknown> | undefined {
  const fields = SCHEMA_FIELDS.get(type);
  if (fields === undefined || fields.length > 30) return undefined;
  const savedBytes = rb;
  rb = data;
  rp = start;
  rend = end;
  try {
    const count = readCount(true);
    const values: unknown[] = new Array(fields.length);
    let seen = 0;
    for (let i = 0; i < count; i++) {
      const index = readKey(fields);
      if (index < 0 || (seen & (1 << index)) !== 0) throw GIVE_UP;
      seen |= 1 << index;
      values[index] = readField((fields[index] as FieldSpec).kind);
    }
    if (rp !== rend) throw GIVE_UP;
    const out: Record<string, unknown> = {};
    for (let i = 0; i < fields.length; i++) {
      const field = fields[i] as FieldSpec;
      if ((seen & (1 << i)) !== 0) out[field.name] = values[i];
      else if (!field.optional) throw GIVE_UP;
    }
    return out;
  } catch (error) {
    if (error === GIVE_UP) return undefined;
    throw error;
  } finally {
    rb = savedBytes;
  }
}
