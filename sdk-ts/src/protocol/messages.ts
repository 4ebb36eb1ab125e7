/**
 * The messages of the Holdfast service protocol (see docs/protocol.md).
 *
 * Every message body is a MessagePack map whose fields are listed once, in `SCHEMAS`; the TypeScript
 * types of the bodies are derived from that table, so the wire layout and the types cannot drift apart.
 */

/** A failure carried by an outcome: the code and message of a terminal error. */
export interface Failure {
  code: number;
  message: string;
}

/**
 * The result of a completable entry. At most one field is set; an empty map means "completed without
 * a value" (a sleep that fired, a state key that is absent, a promise resolution that was accepted).
 */
export interface Outcome {
  value?: Uint8Array;
  failure?: Failure;
  keys?: string[];
}

/** The wire kinds a field can have; a trailing `?` marks an optional field. */
interface Kinds {
  u16: number;
  u32: number;
  u64: number;
  bool: boolean;
  str: string;
  bin: Uint8Array;
  /** Binary of exactly 32 bytes: an awakeable key. */
  key: Uint8Array;
  outcome: Outcome;
  indexes: number[];
  headers: [string, string][];
  state: [string, Uint8Array][];
}
type Kind = keyof Kinds;
type Schema = Readonly<Record<string, Kind | `${Kind}?`>>;

/** Message names and their 16-bit type codes; entries (journal records) use the 0x01xx range. */
export const MESSAGE_TYPES = {
  start: 0x0001,
  completion: 0x0002,
  entry_ack: 0x0003,
  suspension: 0x0004,
  error: 0x0005,
  end: 0x0006,
  input: 0x0101,
  output: 0x0102,
  get_state: 0x0103,
  set_state: 0x0104,
  clear_state: 0x0105,
  clear_all_state: 0x0106,
  state_keys: 0x0107,
  call: 0x0108,
  send: 0x0109,
  sleep: 0x010a,
  run: 0x010b,
  awakeable: 0x010c,
  complete_awakeable: 0x010d,
  get_promise: 0x010e,
  peek_promise: 0x010f,
  complete_promise: 0x0110,
} as const;

/** The name of a message type, as used in code and in the shared test vectors. */
export type MessageName = keyof typeof MESSAGE_TYPES;

/** The fields of every message body, the single source of truth for encoding, decoding and typing. */
export const SCHEMAS = {
  start: {
    id: "str",
    key: "str?",
    attempt: "u32",
    known_entries: "u32",
    state: "state",
    state_complete: "bool",
    headers: "headers",
    retry_count: "u32",
    retry_entry: "u32?",
    retry_elapsed_ms: "u64",
    awakeable_key: "key",
  },
  completion: { entry: "u32", result: "outcome" },
  entry_ack: { entry: "u32" },
  suspension: { waiting_on: "indexes" },
  error: {
    code: "u16",
    message: "str",
    retryable: "bool",
    related_entry: "u32?",
    next_retry_delay_ms: "u64?",
  },
  end: {},
  input: { value: "bin" },
  output: { result: "outcome" },
  get_state: { key: "str", result: "outcome?" },
  set_state: { key: "str", value: "bin" },
  clear_state: { key: "str" },
  clear_all_state: {},
  state_keys: { result: "outcome?" },
  call: {
    service: "str",
    handler: "str",
    key: "str?",
    headers: "headers",
    idempotency_key: "str?",
    parameter: "bin",
    result: "outcome?",
  },
  send: {
    service: "str",
    handler: "str",
    key: "str?",
    headers: "headers",
    idempotency_key: "str?",
    parameter: "bin",
    delay_ms: "u64?",
  },
  sleep: { duration_ms: "u64", result: "outcome?" },
  run: { name: "str", result: "outcome?" },
  awakeable: { result: "outcome?" },
  complete_awakeable: { id: "str", result: "outcome" },
  get_promise: { name: "str", result: "outcome?" },
  peek_promise: { name: "str", result: "outcome?" },
  complete_promise: { name: "str", completion: "outcome", result: "outcome?" },
} as const satisfies Record<MessageName, Schema>;

type Required<S> = { -readonly [K in keyof S as S[K] extends Kind ? K : never]: S[K] extends Kind ? Kinds[S[K]] : never };
type Optional<S> = {
  -readonly [K in keyof S as S[K] extends `${Kind}?` ? K : never]?: S[K] extends `${infer B extends Kind}?` ? Kinds[B] : never;
};
type Flatten<T> = { [K in keyof T]: T[K] };

/** The typed body of the message named `N`. */
export type Body<N extends MessageName> = Flatten<Required<(typeof SCHEMAS)[N]> & Optional<(typeof SCHEMAS)[N]>>;

/** Frame flag: the sender needs an `entry_ack` once this entry or completion is durable. */
export const FLAG_ACK = 0x0001;

/** A decoded message: its name, its frame flags and its typed body. */
export type Message = { [N in MessageName]: { type: N; flags?: number; body: Body<N> } }[MessageName];

/** The message of one given name. */
export type MessageOf<N extends MessageName> = Extract<Message, { type: N }>;

/** Whether the message is a journal entry (type code in the 0x01xx range). */
export function isEntry(type: MessageName): boolean {
  return (MESSAGE_TYPES[type] & 0xff00) === 0x0100;
}

/** Entries whose result the kernel (or, for `run`, the SDK) fills in later. */
export const COMPLETABLE: ReadonlySet<MessageName> = new Set<MessageName>([
  "get_state",
  "state_keys",
  "call",
  "sleep",
  "run",
  "awakeable",
  "get_promise",
  "peek_promise",
  "complete_promise",
]);

const NAMES_BY_CODE = new Map<number, MessageName>(
  Object.entries(MESSAGE_TYPES).map(([name, code]) => [code, name as MessageName]),
);

/** The message name for a type code, or undefined for a code this version does not know. */
export function messageName(code: number): MessageName | undefined {
  return NAMES_BY_CODE.get(code);
}

/** Thrown by the codec for any malformed input; `kind` is shared with the Rust codec's error names. */
export class ProtocolError extends Error {
  constructor(
    readonly kind: "frame_too_long" | "unknown_type" | "reserved_flags" | "invalid_body" | "truncated",
    message: string,
  ) {
    super(message);
    this.name = "ProtocolError";
  }
}

function invalid(path: string, expected: string): ProtocolError {
  return new ProtocolError("invalid_body", `${path}: expected ${expected}`);
}

function checkInt(value: unknown, max: number, path: string, expected: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > max) throw invalid(path, expected);
  return value;
}

function checkString(value: unknown, path: string): string {
  if (typeof value !== "string") throw invalid(path, "a string");
  return value;
}

function checkBytes(value: unknown, path: string): Uint8Array {
  if (!(value instanceof Uint8Array)) throw invalid(path, "binary");
  return value;
}

function checkArray(value: unknown, path: string): unknown[] {
  if (!Array.isArray(value)) throw invalid(path, "an array");
  return value;
}

function checkMap(value: unknown, path: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value) || value instanceof Uint8Array) {
    throw invalid(path, "a map");
  }
  return value as Record<string, unknown>;
}

function checkPairs<V>(value: unknown, path: string, second: (v: unknown, p: string) => V): [string, V][] {
  return checkArray(value, path).map((pair, i) => {
    const p = checkArray(pair, `${path}[${i}]`);
    if (p.length !== 2) throw invalid(`${path}[${i}]`, "a pair");
    return [checkString(p[0], `${path}[${i}][0]`), second(p[1], `${path}[${i}][1]`)];
  });
}

function checkOutcome(value: unknown, path: string): Outcome {
  const map = checkMap(value, path);
  const out: Outcome = {};
  let set = 0;
  if (map.value != null) {
    out.value = checkBytes(map.value, `${path}.value`);
    set++;
  }
  if (map.failure != null) {
    const f = checkMap(map.failure, `${path}.failure`);
    out.failure = {
      code: checkInt(f.code, 0xffff, `${path}.failure.code`, "a u16"),
      message: checkString(f.message, `${path}.failure.message`),
    };
    set++;
  }
  if (map.keys != null) {
    out.keys = checkArray(map.keys, `${path}.keys`).map((k, i) => checkString(k, `${path}.keys[${i}]`));
    set++;
  }
  if (set > 1) throw invalid(path, "at most one of value, failure, keys");
  return out;
}

const CHECKS: { [K in Kind]: (value: unknown, path: string) => Kinds[K] } = {
  u16: (v, p) => checkInt(v, 0xffff, p, "a u16"),
  u32: (v, p) => checkInt(v, 0xffff_ffff, p, "a u32"),
  u64: (v, p) => checkInt(v, Number.MAX_SAFE_INTEGER, p, "an integer below 2^53"),
  bool: (v, p) => {
    if (typeof v !== "boolean") throw invalid(p, "a boolean");
    return v;
  },
  str: checkString,
  bin: checkBytes,
  key: (v, p) => {
    const bytes = checkBytes(v, p);
    if (bytes.length !== 32) throw invalid(p, "32 bytes");
    return bytes;
  },
  outcome: checkOutcome,
  indexes: (v, p) => checkArray(v, p).map((x, i) => checkInt(x, 0xffff_ffff, `${p}[${i}]`, "a u32")),
  headers: (v, p) => checkPairs(v, p, checkString),
  state: (v, p) => checkPairs(v, p, checkBytes),
};

/**
 * Validates a decoded MessagePack value against the schema of `type` and keeps only the known fields
 * (unknown fields are ignored for forward compatibility; `nil` counts as absent).
 */
export function checkBody<N extends MessageName>(type: N, raw: unknown): Body<N> {
  const map = checkMap(raw, type);
  const out: Record<string, unknown> = {};
  for (const [field, spec] of Object.entries(SCHEMAS[type] as Schema)) {
    const optional = spec.endsWith("?");
    const kind = (optional ? spec.slice(0, -1) : spec) as Kind;
    const value = map[field];
    if (value == null) {
      if (!optional) throw invalid(`${type}.${field}`, kind);
      continue;
    }
    out[field] = CHECKS[kind](value, `${type}.${field}`);
  }
  return out as Body<N>;
}
