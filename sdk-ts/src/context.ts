/**
 * The context handed to handlers: every durable step (state, run, sleep, calls, awakeables, workflow
 * promises, deterministic random and time) goes through it and becomes a journal entry.
 */
import { awakeableId, isAwakeableId, publicInvocationId, type Failure, type HandlerKind, type Outcome } from "./protocol/index.js";
import { ErrorCodes, TerminalError, errorFromFailure } from "./errors.js";
import { entryMillis, type Duration } from "./duration.js";
import { serde as serdes, type Serde } from "./serde.js";
import { DurablePromise } from "./promise.js";
import { handlerMeta, type AnyHandler, type Definition } from "./definitions.js";
import type { Invocation, RunOptions } from "./invocation.js";

/** Per-call options, passed as the last argument of a client method. */
export class CallOptions {
  constructor(
    readonly options: {
      idempotencyKey?: string;
      headers?: Record<string, string>;
      input?: Serde<any>;
      output?: Serde<any>;
    },
  ) {}
}

/** Per-send options, passed as the last argument of a send-client method. */
export class SendOptions {
  constructor(
    readonly options: {
      /**
       * Start the callee this long after the send entry is durable (milliseconds or a unit
       * object); the caller does not wait for it.
       */
      delay?: Duration;
      idempotencyKey?: string;
      headers?: Record<string, string>;
      input?: Serde<any>;
    },
  ) {}
}

/** Builders of per-call options: `rpc.opts({...})` for calls, `rpc.sendOpts({...})` for sends. */
export const rpc = {
  opts: (options: CallOptions["options"]) => new CallOptions(options),
  sendOpts: (options: SendOptions["options"]) => new SendOptions(options),
};

type Params<F> = F extends (ctx: any, ...args: infer A) => any ? A : never;
type Out<F> = F extends (...args: any[]) => infer O ? Awaited<O> : never;

/** A typed request-response client: one method per handler, returning the handler's output. */
export type Client<M> = { [K in keyof M]: (...args: [...Params<M[K]>, CallOptions?]) => DurablePromise<Out<M[K]>> };
/** A typed one-way client: one method per handler, returning once the send is journaled. */
export type SendClient<M> = { [K in keyof M]: (...args: [...Params<M[K]>, SendOptions?]) => void };

/** A call by name, for services known only at run time. */
export interface GenericCall<I, O> {
  service: string;
  method: string;
  parameter: I;
  key?: string;
  headers?: Record<string, string>;
  idempotencyKey?: string;
  inputSerde?: Serde<I>;
  outputSerde?: Serde<O>;
}

/** A send by name. */
export interface GenericSend<I> extends Omit<GenericCall<I, unknown>, "outputSerde"> {
  /** Start the callee this long after the send entry is durable. */
  delay?: Duration;
}

/** Options of a whole send client (Restate's older form); a per-call `rpc.sendOpts` wins over them. */
export type ClientSendOptions = { delay?: Duration } | SendOptions;

/** What `ctx.request()` tells about the invocation. */
export interface Request {
  /** Invocation id. */
  readonly id: string;
  /** Headers of the original request. */
  readonly headers: ReadonlyMap<string, string>;
  /** Headers of the HTTP request carrying this attempt. */
  readonly attemptHeaders: ReadonlyMap<string, string | string[] | undefined>;
  /** The raw input. */
  readonly body: Uint8Array;
  /** Attempt number, from 1. */
  readonly attempt: number;
}

/** Deterministic randomness, seeded by the invocation id. */
export interface Rand {
  random(): number;
  uuidv4(): string;
}

/** Journaled time. */
export interface ContextDate {
  now(): Promise<number>;
  toJSON(): Promise<string>;
}

/**
 * A workflow durable promise, shared by the workflow's handlers under one key. Await it (or its
 * `get()`) to wait for its value; `peek()` looks without waiting (undefined while not completed);
 * `resolve(v)` and `reject(reason)` complete it, once: a second completion fails with a
 * `TerminalError` with code 409 ("promise was already completed").
 */
export interface WorkflowPromise<T> extends Promise<T> {
  get(): DurablePromise<T>;
  peek(): DurablePromise<T | undefined>;
  resolve(value?: T): DurablePromise<void>;
  reject(reason: string): DurablePromise<void>;
  /** `get()` raced against a durable timer (see `DurablePromise.orTimeout`). */
  orTimeout(duration: Duration): DurablePromise<T>;
  /** `get()` transformed (see `DurablePromise.map`). */
  map<U>(mapper: (value?: T, failure?: TerminalError) => U): DurablePromise<U>;
}

/** The context of a service handler. */
export interface Context {
  request(): Request;
  run<T>(action: () => T | Promise<T>): DurablePromise<T>;
  run<T>(name: string, action: () => T | Promise<T>, options?: RunOptions<T>): DurablePromise<T>;
  /**
   * A durable timer: completes once `duration` (milliseconds or a unit object) has passed, counted
   * from when the sleep entry is durable. `name` is accepted for compatibility with Restate's
   * signature; the protocol's sleep entry does not carry it.
   */
  sleep(duration: Duration, name?: string): DurablePromise<void>;
  serviceClient<M>(def: Definition<string, M>): Client<M>;
  objectClient<M>(def: Definition<string, M>, key: string): Client<M>;
  workflowClient<M>(def: Definition<string, M>, key: string): Client<M>;
  serviceSendClient<M>(def: Definition<string, M>, opts?: ClientSendOptions): SendClient<M>;
  objectSendClient<M>(def: Definition<string, M>, key: string, opts?: ClientSendOptions): SendClient<M>;
  workflowSendClient<M>(def: Definition<string, M>, key: string, opts?: ClientSendOptions): SendClient<M>;
  genericCall<I = Uint8Array, O = Uint8Array>(call: GenericCall<I, O>): DurablePromise<O>;
  genericSend<I = Uint8Array>(send: GenericSend<I>): void;
  /** A promise completed from outside through `id`, which only this invocation can make. */
  awakeable<T>(serde?: Serde<T>): { id: string; promise: DurablePromise<T> };
  /** Resolves an awakeable; a malformed id throws a `TerminalError` with code 400. */
  resolveAwakeable<T>(id: string, payload?: T, serde?: Serde<T>): void;
  /** Rejects an awakeable: its handler gets a `TerminalError` with `reason` and code 500. */
  rejectAwakeable(id: string, reason: string): void;
  readonly rand: Rand;
  readonly date: ContextDate;
}

/** The context of a shared object handler: read-only state. */
export interface ObjectSharedContext extends Context {
  readonly key: string;
  get<T>(name: string, serde?: Serde<T>): DurablePromise<T | null>;
  stateKeys(): DurablePromise<string[]>;
}

/** The context of an exclusive object handler: read-write state. */
export interface ObjectContext extends ObjectSharedContext {
  set<T>(name: string, value: T, serde?: Serde<T>): void;
  clear(name: string): void;
  clearAll(): void;
}

/** The context of a workflow's shared handlers. */
export interface WorkflowSharedContext extends ObjectSharedContext {
  promise<T>(name: string, serde?: Serde<T>): WorkflowPromise<T>;
}

/** The context of a workflow's `run` handler. */
export interface WorkflowContext extends WorkflowSharedContext, ObjectContext {}

const EMPTY = new Uint8Array(0);
const textEncoder = new TextEncoder();

/** The headers of the HTTP request carrying an attempt, or how to get them when first asked for. */
export type AttemptHeaders =
  | ReadonlyMap<string, string | string[] | undefined>
  | (() => ReadonlyMap<string, string | string[] | undefined>);

/** One context object serves every handler type; the interfaces above restrict what each sees. */
export class ContextImpl implements WorkflowContext {
  // Made when first used: most handlers never touch them.
  private random?: Rand;
  private clock?: ContextDate;
  private requestInfo?: Request;

  constructor(
    private readonly inv: Invocation,
    private readonly kind: HandlerKind,
    private readonly attemptHeaders: AttemptHeaders,
  ) {
    // Fails here, as it always has, if the attempt has not started.
    void this.start;
  }

  get rand(): Rand {
    return (this.random ??= new DeterministicRandom(this.start.id));
  }

  get date(): ContextDate {
    return (this.clock ??= {
      now: () => this.run("Date.now", () => Date.now()),
      toJSON: () => this.run("Date.toJSON", () => new Date().toJSON()),
    });
  }

  private get start() {
    const start = this.inv.start;
    if (!start) throw new Error("context used before the attempt started");
    return start;
  }

  get key(): string {
    return this.start.key ?? "";
  }

  request(): Request {
    if (this.requestInfo === undefined) {
      const start = this.start;
      const attemptHeaders = this.attemptHeaders;
      // The same object on every call; each part is worked out when first read.
      let id: string | undefined;
      let headers: ReadonlyMap<string, string> | undefined;
      let attempt: ReadonlyMap<string, string | string[] | undefined> | undefined;
      this.requestInfo = {
        get id() {
          return (id ??= publicInvocationId(start.id));
        },
        get headers() {
          return (headers ??= new Map(start.headers));
        },
        get attemptHeaders() {
          return (attempt ??= typeof attemptHeaders === "function" ? attemptHeaders() : attemptHeaders);
        },
        body: this.inv.input,
        attempt: start.attempt,
      };
    }
    return this.requestInfo;
  }

  run<T>(nameOrAction: string | (() => T | Promise<T>), action?: () => T | Promise<T>, options?: RunOptions<T>): DurablePromise<T> {
    const named = typeof nameOrAction !== "function";
    const fn = named ? action : nameOrAction;
    if (typeof fn !== "function") throw new TypeError("ctx.run needs an action");
    return this.inv.run(named ? nameOrAction : "run", fn, options?.serde ?? serdes.json, options);
  }

  sleep(duration: Duration, _name?: string): DurablePromise<void> {
    return this.inv.sleep(duration);
  }

  // ---- state ----

  get<T>(name: string, serde: Serde<T> = serdes.json): DurablePromise<T | null> {
    const { values, complete } = this.inv.stateCache();
    const cached = values.get(name);
    const eager: Outcome | undefined = cached ? { value: cached } : cached === null || complete ? {} : undefined;
    return this.inv.completable("get_state", eager ? { key: name, result: eager } : { key: name }, (o) =>
      o.value ? serde.deserialize(o.value) ?? null : null,
    );
  }

  stateKeys(): DurablePromise<string[]> {
    const { values, complete } = this.inv.stateCache();
    const keys = [...values].filter(([, v]) => v !== null).map(([k]) => k).sort();
    return this.inv.completable("state_keys", complete ? { result: { keys } } : {}, (o) => o.keys ?? []);
  }

  set<T>(name: string, value: T, serde: Serde<T> = serdes.json): void {
    this.writable("set");
    const bytes = serde.serialize(value);
    this.inv.oneWay("set_state", { key: name, value: bytes });
    this.inv.stateCache().values.set(name, bytes);
  }

  clear(name: string): void {
    this.writable("clear");
    this.inv.oneWay("clear_state", { key: name });
    this.inv.stateCache().values.set(name, null);
  }

  clearAll(): void {
    this.writable("clearAll");
    this.inv.oneWay("clear_all_state", {});
    this.inv.stateCache().values.clear();
    this.inv.markStateComplete();
  }

  private writable(op: string): void {
    if (this.kind === "shared") throw new TerminalError(`ctx.${op} is not allowed in a shared handler (state is read-only)`);
  }

  // ---- calls ----

  serviceClient<M>(def: Definition<string, M>): Client<M> {
    return this.client(def, undefined) as Client<M>;
  }
  objectClient<M>(def: Definition<string, M>, key: string): Client<M> {
    return this.client(def, key) as Client<M>;
  }
  workflowClient<M>(def: Definition<string, M>, key: string): Client<M> {
    return this.client(def, key) as Client<M>;
  }
  serviceSendClient<M>(def: Definition<string, M>, opts?: ClientSendOptions): SendClient<M> {
    return this.sendClient(def, undefined, opts) as SendClient<M>;
  }
  objectSendClient<M>(def: Definition<string, M>, key: string, opts?: ClientSendOptions): SendClient<M> {
    return this.sendClient(def, key, opts) as SendClient<M>;
  }
  workflowSendClient<M>(def: Definition<string, M>, key: string, opts?: ClientSendOptions): SendClient<M> {
    return this.sendClient(def, key, opts) as SendClient<M>;
  }

  genericCall<I = Uint8Array, O = Uint8Array>(call: GenericCall<I, O>): DurablePromise<O> {
    const input = (call.inputSerde ?? serdes.binary) as Serde<I>;
    const output = (call.outputSerde ?? serdes.binary) as Serde<O>;
    const body = {
      service: call.service,
      handler: call.method,
      key: call.key,
      headers: Object.entries(call.headers ?? {}),
      idempotency_key: call.idempotencyKey,
      parameter: input.serialize(call.parameter),
    };
    return this.inv.completable("call", body, (o) => output.deserialize(o.value ?? EMPTY));
  }

  genericSend<I = Uint8Array>(send: GenericSend<I>): void {
    const input = (send.inputSerde ?? serdes.binary) as Serde<I>;
    this.inv.oneWay("send", {
      service: send.service,
      handler: send.method,
      key: send.key,
      headers: Object.entries(send.headers ?? {}),
      idempotency_key: send.idempotencyKey,
      parameter: input.serialize(send.parameter),
      delay_ms: send.delay === undefined ? undefined : entryMillis(send.delay, "a send delay"),
    });
  }

  private client(def: Definition<string, unknown>, key: string | undefined): Record<string, unknown> {
    return methodProxy((method, args) => {
      const opts = args.at(-1) instanceof CallOptions ? (args.pop() as CallOptions).options : {};
      const meta = handlerMetaOf(def, method);
      return this.genericCall({
        service: def.name,
        method,
        key,
        parameter: args[0],
        headers: opts.headers,
        idempotencyKey: opts.idempotencyKey,
        inputSerde: opts.input ?? meta.input,
        outputSerde: opts.output ?? meta.output,
      });
    });
  }

  private sendClient(def: Definition<string, unknown>, key: string | undefined, clientOpts?: ClientSendOptions): Record<string, unknown> {
    const defaults: SendOptions["options"] = clientOpts instanceof SendOptions ? clientOpts.options : { delay: clientOpts?.delay };
    return methodProxy((method, args) => {
      const opts = args.at(-1) instanceof SendOptions ? { ...defaults, ...(args.pop() as SendOptions).options } : defaults;
      this.genericSend({
        service: def.name,
        method,
        key,
        parameter: args[0],
        headers: opts.headers,
        idempotencyKey: opts.idempotencyKey,
        inputSerde: opts.input ?? handlerMetaOf(def, method).input,
        delay: opts.delay,
      });
    });
  }

  // ---- awakeables and workflow promises ----

  awakeable<T>(serde: Serde<T> = serdes.json): { id: string; promise: DurablePromise<T> } {
    // The id of the entry about to be written; made first, so that a start without a usable id or
    // awakeable key writes nothing.
    const id = awakeableId(this.start.id, this.inv.lastIndex + 1, this.start.awakeable_key);
    const promise = this.inv.completable("awakeable", {}, (o) => serde.deserialize(o.value ?? EMPTY));
    return { id, promise };
  }

  resolveAwakeable<T>(id: string, payload?: T, serde: Serde<T> = serdes.json): void {
    checkAwakeableId(id);
    this.inv.oneWay("complete_awakeable", { id, result: { value: serde.serialize(payload as T) } });
  }

  rejectAwakeable(id: string, reason: string): void {
    checkAwakeableId(id);
    this.inv.oneWay("complete_awakeable", { id, result: { failure: { code: ErrorCodes.INTERNAL, message: String(reason) } } });
  }

  promise<T>(name: string, serde: Serde<T> = serdes.json): WorkflowPromise<T> {
    let got: DurablePromise<T> | undefined;
    const get = () => (got ??= this.inv.completable("get_promise", { name }, (o) => serde.deserialize(o.value ?? EMPTY)));
    const complete = (completion: Outcome) =>
      this.inv.completable<"complete_promise", void>("complete_promise", { name, completion }, () => undefined, completionFailure);
    return {
      [Symbol.toStringTag]: "WorkflowPromise",
      get,
      peek: () => this.inv.completable("peek_promise", { name }, (o) => (o.value ? serde.deserialize(o.value) : undefined)),
      resolve: (value?: T) => complete({ value: serde.serialize(value as T) }),
      reject: (reason: string) => complete({ failure: { code: ErrorCodes.INTERNAL, message: String(reason) } }),
      orTimeout: (duration: Duration) => get().orTimeout(duration),
      map: <U>(mapper: (value?: T, failure?: TerminalError) => U) => get().map(mapper),
      then: (onfulfilled, onrejected) => get().then(onfulfilled, onrejected),
      catch: (onrejected) => get().catch(onrejected),
      finally: (onfinally) => get().finally(onfinally),
    };
  }
}

/** Throws a `TerminalError` (400) if `id` is not an awakeable id, before anything is journaled. */
export function checkAwakeableId(id: unknown): void {
  if (isAwakeableId(id)) return;
  const shown = typeof id === "string" ? JSON.stringify(id.length > 120 ? `${id.slice(0, 120)}...` : id) : String(id);
  throw new TerminalError(`malformed awakeable id ${shown}: expected awk_ followed by 88 lower-case hex digits`, {
    errorCode: ErrorCodes.BAD_REQUEST,
  });
}

/** The message of the failure with which the kernel cancels pending entries (protocol, section 5). */
const CANCELLED_MESSAGE = "cancelled";

/**
 * The error of a refused promise completion: 409 means the promise was already completed, not a
 * cancellation, unless it is the cancellation failure itself.
 */
function completionFailure(failure: Failure): unknown {
  if (failure.code === ErrorCodes.CANCELLED && failure.message !== CANCELLED_MESSAGE) {
    return new TerminalError(failure.message, { errorCode: failure.code });
  }
  return errorFromFailure(failure);
}

/** The metadata of `method` on `def`, with JSON defaults when the handler is not declared. */
function handlerMetaOf(def: Definition<string, unknown>, method: string) {
  const handler = (def.handlers as Record<string, AnyHandler | undefined>)[method];
  return handlerMeta(def.type, method, handler ?? (() => undefined));
}

/** An object whose every property is a method forwarding `(name, args)` to `call`. */
export function methodProxy(call: (method: string, args: unknown[]) => unknown): Record<string, unknown> {
  return new Proxy(
    {},
    {
      get: (_target, prop) => (typeof prop === "string" && prop !== "then" ? (...args: unknown[]) => call(prop, args) : undefined),
    },
  );
}

/** xoshiro128** seeded from a hash of the invocation id: the same sequence on every replay. */
class DeterministicRandom implements Rand {
  private s: Uint32Array;

  constructor(seed: string) {
    let h = 0x811c9dc5;
    for (const byte of textEncoder.encode(seed)) h = Math.imul(h ^ byte, 0x01000193) >>> 0;
    this.s = new Uint32Array(4);
    for (let i = 0; i < 4; i++) {
      // splitmix32 spreads the single hash over the four words of state.
      h = (h + 0x9e3779b9) >>> 0;
      let z = h;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
  }

  private next(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1] as number, 5), 7), 9) >>> 0;
    const t = ((s[1] as number) << 9) >>> 0;
    s[2] = (s[2] as number) ^ (s[0] as number);
    s[3] = (s[3] as number) ^ (s[1] as number);
    s[1] = (s[1] as number) ^ (s[2] as number);
    s[0] = (s[0] as number) ^ (s[3] as number);
    s[2] = (s[2] as number) ^ t;
    s[3] = rotl(s[3] as number, 11);
    return result;
  }

  random(): number {
    return this.next() / 0x1_0000_0000;
  }

  uuidv4(): string {
    const bytes = new Uint8Array(16);
    const view = new DataView(bytes.buffer);
    for (let i = 0; i < 4; i++) view.setUint32(i * 4, this.next());
    bytes[6] = ((bytes[6] as number) & 0x0f) | 0x40;
    bytes[8] = ((bytes[8] as number) & 0x3f) | 0x80;
    const hex = Buffer.from(bytes).toString("hex");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
